// The playground page: controls, canvases and the conversation with the compute worker. Nothing
// heavy runs here; the worker (worker.ts) trains and samples and this script draws what it sends.
import { Rng } from "../core/rng.js";
import type { PathName } from "../core/paths.js";
import type { SolverName } from "../core/solvers.js";
import { sampleToy, toyBounds, type ToyDatasetName } from "../data/toy2d.js";
import { drawImages, drawLoss, FlowView, runningMean } from "./draw.js";
import { CUSTOM_BOUNDS, type Bounds, type FlowSnapshot, type FromWorker, type LoadedFile, type PlaygroundDataset, type SampleSettings, type ToWorker, type TrainSettings } from "./protocol.js";

/** What the page knows, exposed as window.__flowmatch for tests and curious people. */
export interface PlaygroundState {
  ready: boolean;
  device: string;
  threads: number;
  crossOriginIsolated: boolean;
  status: "starting" | "idle" | "training" | "done" | "loading" | "generating" | "error";
  step: number;
  totalSteps: number;
  losses: number[];
  stepsPerSecond: number;
  snapshots: number;
  lastSnapshot: { step: number; label: string; ms: number; particles: number } | null;
  error: { title: string; message: string } | null;
  checkpoint: { kind: "2d" | "image"; summary: string } | null;
  images: { step: number; totalSteps: number; done: boolean; seconds: number; nfe: number };
}

export interface PlaygroundHook {
  state: PlaygroundState;
  /** Stop the time animation and show frame i (-1 = last, the samples). */
  showFrame(i: number): void;
}

declare global {
  interface Window {
    __flowmatch: PlaygroundHook;
  }
}

const PREVIEW_POINTS = 2000;
const MAX_CUSTOM_POINTS = 5000;
const FRAME_MS = 90;
/** Pause on the samples before the animation starts over. */
const HOLD_LAST_MS = 1400;

function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`playground page is missing #${id}`);
  return found as T;
}

const state: PlaygroundState = {
  ready: false,
  device: "",
  threads: 0,
  crossOriginIsolated: false,
  status: "starting",
  step: 0,
  totalSteps: 0,
  losses: [],
  stepsPerSecond: 0,
  snapshots: 0,
  lastSnapshot: null,
  error: null,
  checkpoint: null,
  images: { step: 0, totalSteps: 0, done: false, seconds: 0, nfe: 0 },
};

const ui = {
  app: el<HTMLElement>("app"),
  badge: el<HTMLElement>("engine-badge"),
  error: el<HTMLElement>("error"),
  errorTitle: el<HTMLElement>("error-title"),
  errorMessage: el<HTMLElement>("error-message"),
  errorClose: el<HTMLButtonElement>("error-close"),
  dataset: el<HTMLSelectElement>("dataset"),
  drawTools: el<HTMLElement>("draw-tools"),
  customCount: el<HTMLElement>("custom-count"),
  clearPoints: el<HTMLButtonElement>("clear-points"),
  path: el<HTMLSelectElement>("path"),
  steps: el<HTMLInputElement>("steps"),
  batchSize: el<HTMLInputElement>("batch-size"),
  hidden: el<HTMLSelectElement>("hidden"),
  depth: el<HTMLSelectElement>("depth"),
  lr: el<HTMLSelectElement>("lr"),
  train: el<HTMLButtonElement>("train"),
  reset: el<HTMLButtonElement>("reset"),
  solver: el<HTMLSelectElement>("solver"),
  nfe: el<HTMLInputElement>("nfe"),
  dropzone: el<HTMLElement>("dropzone"),
  ckptInput: el<HTMLInputElement>("ckpt-input"),
  ckptStatus: el<HTMLElement>("ckpt-status"),
  back2d: el<HTMLButtonElement>("back-2d"),
  flowCanvas: el<HTMLCanvasElement>("flow-canvas"),
  flowLabel: el<HTMLElement>("flow-label"),
  play: el<HTMLButtonElement>("play"),
  time: el<HTMLInputElement>("time"),
  timeLabel: el<HTMLElement>("time-label"),
  lossCanvas: el<HTMLCanvasElement>("loss-canvas"),
  statStep: el<HTMLElement>("stat-step"),
  statLoss: el<HTMLElement>("stat-loss"),
  statSpeed: el<HTMLElement>("stat-speed"),
  statStatus: el<HTMLElement>("stat-status"),
  imageClass: el<HTMLSelectElement>("image-class"),
  guidance: el<HTMLInputElement>("guidance"),
  guidanceValue: el<HTMLElement>("guidance-value"),
  imageCount: el<HTMLInputElement>("image-count"),
  generate: el<HTMLButtonElement>("generate"),
  imageCanvas: el<HTMLCanvasElement>("image-canvas"),
  imageLabel: el<HTMLElement>("image-label"),
};

// ---- the picture -------------------------------------------------------------------------------

const flowView = new FlowView(ui.flowCanvas);
let bounds: Bounds = toyBounds("checkerboard");
let dataPreview: Float32Array | null = null;
let customPoints: number[] = [];
let snapshot: FlowSnapshot | null = null;
let frame = 0;
let playing = true;
let frameShownAt = 0;
/** Set when a checkpoint's 2-D model is shown instead of the dataset picked in the controls. */
let checkpointDataset: string | null = null;

function selectedDataset(): PlaygroundDataset {
  return ui.dataset.value as PlaygroundDataset;
}

function refreshDataPreview(): void {
  const name = checkpointDataset ?? selectedDataset();
  if (name === "custom") {
    bounds = CUSTOM_BOUNDS;
    dataPreview = null;
  } else {
    try {
      bounds = toyBounds(name as ToyDatasetName);
      dataPreview = sampleToy(name as ToyDatasetName, PREVIEW_POINTS, new Rng(7));
    } catch {
      // A checkpoint trained on drawn points: no reference data to show.
      dataPreview = null;
    }
  }
}

function hint(): string | null {
  if (snapshot) return null;
  if (selectedDataset() === "custom" && !checkpointDataset) {
    return customPoints.length === 0 ? "Click and drag to draw your data" : "Press Train to learn a flow to your points";
  }
  return state.ready ? "Press Train to learn a flow from noise to this data" : "Starting the engine…";
}

function redrawFlow(): void {
  const custom = selectedDataset() === "custom" && !checkpointDataset ? Float32Array.from(customPoints) : null;
  flowView.draw({ bounds: snapshot?.bounds ?? bounds, data: dataPreview, custom, snapshot, frame, hint: hint() });
  const t = snapshot ? (snapshot.times[Math.min(frame, snapshot.times.length - 1)] ?? 0) : 0;
  ui.timeLabel.textContent = `t = ${t.toFixed(2)}`;
  ui.time.value = String(frame);
}

function animate(now: number): void {
  if (playing && snapshot && snapshot.frames.length > 1) {
    const last = snapshot.frames.length - 1;
    const wait = frame === last ? HOLD_LAST_MS : FRAME_MS;
    if (now - frameShownAt >= wait) {
      frame = frame === last ? 0 : frame + 1;
      frameShownAt = now;
      redrawFlow();
    }
  }
  requestAnimationFrame(animate);
}

function setPlaying(on: boolean): void {
  playing = on;
  ui.play.textContent = on ? "❚❚" : "▶";
}

function showSnapshot(snap: FlowSnapshot): void {
  const wasLast = snapshot !== null && frame === snapshot.frames.length - 1;
  snapshot = snap;
  state.snapshots++;
  state.lastSnapshot = { step: snap.step, label: snap.label, ms: snap.ms, particles: snap.frames[0].length / 2 };
  ui.time.max = String(snap.frames.length - 1);
  frame = wasLast ? snap.frames.length - 1 : Math.min(frame, snap.frames.length - 1);
  ui.flowLabel.textContent = `step ${snap.step} · ${snap.label}`;
  redrawFlow();
}

// ---- loss and status -----------------------------------------------------------------------------

function refreshStats(): void {
  ui.statStep.textContent = state.totalSteps > 0 ? `${state.step} / ${state.totalSteps}` : String(state.step);
  const recent = state.losses.slice(-50);
  ui.statLoss.textContent = recent.length ? runningMean(recent, recent.length)[recent.length - 1].toFixed(3) : "–";
  ui.statSpeed.textContent = state.stepsPerSecond > 0 ? `${state.stepsPerSecond.toFixed(1)} steps/s` : "–";
  ui.statStatus.textContent = state.status;
}

let lossDrawPending = false;
function redrawLoss(): void {
  // Progress can arrive faster than the screen refreshes; draw at most once per frame.
  if (lossDrawPending) return;
  lossDrawPending = true;
  requestAnimationFrame(() => {
    lossDrawPending = false;
    drawLoss(ui.lossCanvas, state.losses, state.checkpoint ? "this checkpoint has no loss log" : undefined);
  });
}

function setStatus(status: PlaygroundState["status"]): void {
  state.status = status;
  const training = status === "training";
  ui.train.textContent = training ? "Stop" : "Train";
  ui.train.classList.toggle("stop", training);
  ui.train.disabled = !state.ready;
  ui.generate.textContent = status === "generating" ? "Stop" : "Generate";
  refreshStats();
}

function showError(title: string, message: string): void {
  state.error = { title, message };
  ui.errorTitle.textContent = title;
  ui.errorMessage.textContent = message;
  ui.error.hidden = false;
}

function clearError(): void {
  state.error = null;
  ui.error.hidden = true;
}

// ---- worker ----------------------------------------------------------------------------------------

const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const send = (msg: ToWorker): void => worker.postMessage(msg);

worker.onerror = (event) => {
  event.preventDefault();
  showError("The compute worker stopped", `${event.message || "it failed to load"}; reload the page to start again`);
  setStatus("error");
};

worker.onmessage = (event: MessageEvent<FromWorker>) => {
  const msg = event.data;
  switch (msg.type) {
    case "ready":
      state.ready = true;
      state.device = msg.device;
      state.threads = msg.threads;
      state.crossOriginIsolated = msg.isolated;
      ui.badge.textContent = msg.device === "webgpu" ? "engine: WebGPU" : `engine: Wasm · ${msg.threads} thread${msg.threads === 1 ? "" : "s"}`;
      ui.badge.classList.add("ok");
      setStatus("idle");
      redrawFlow();
      break;
    case "progress":
      state.step = msg.step;
      state.totalSteps = msg.total;
      state.stepsPerSecond = msg.stepsPerSecond;
      for (const l of msg.losses) state.losses.push(l);
      refreshStats();
      redrawLoss();
      break;
    case "snapshot":
      showSnapshot(msg);
      break;
    case "trainDone":
      state.stepsPerSecond = msg.stepsPerSecond;
      setStatus("done");
      break;
    case "checkpoint2d":
      state.checkpoint = { kind: "2d", summary: msg.summary };
      checkpointDataset = msg.dataset;
      ui.ckptStatus.textContent = `Loaded: ${msg.summary}`;
      enterMode("2d");
      state.losses = msg.losses;
      state.step = msg.losses.length;
      state.totalSteps = 0;
      state.stepsPerSecond = 0;
      snapshot = null;
      refreshDataPreview();
      redrawLoss();
      setStatus("done");
      break;
    case "checkpointImage":
      state.checkpoint = { kind: "image", summary: msg.summary };
      imageShape = { height: msg.height, width: msg.width, channels: msg.channels };
      imageClassNames = msg.classNames;
      ui.imageClass.replaceChildren(
        new Option("all classes (one each)", "all"),
        ...msg.classNames.map((name, i) => new Option(`${i}: ${name}`, String(i))),
      );
      ui.imageClass.value = msg.classNames.length > 0 ? "0" : "all";
      ui.ckptStatus.textContent = `Loaded: ${msg.summary}`;
      ui.imageLabel.textContent = msg.summary;
      enterMode("image");
      state.losses = msg.losses;
      state.step = msg.losses.length;
      state.totalSteps = 0;
      state.stepsPerSecond = 0;
      ui.imageCount.disabled = ui.imageClass.value === "all";
      redrawLoss();
      setStatus("idle");
      break;
    case "imageStep":
      state.images.step = msg.step;
      state.images.totalSteps = msg.totalSteps;
      ui.imageLabel.textContent = `step ${msg.step} / ${msg.totalSteps} · t = ${msg.t.toFixed(2)}`;
      drawImages(ui.imageCanvas, msg.pixels, { n: msg.n, ...imageShape }, imageLabels);
      break;
    case "imagesDone":
      state.images.done = true;
      state.images.seconds = msg.seconds;
      state.images.nfe = msg.nfe;
      ui.imageLabel.textContent = `${msg.cancelled ? "stopped" : "done"} · ${msg.nfe} network evaluations in ${msg.seconds.toFixed(1)} s`;
      setStatus("idle");
      break;
    case "error":
      showError(msg.title, msg.message);
      setStatus(state.checkpoint || state.losses.length ? "done" : "idle");
      if (msg.title.includes("checkpoint")) ui.ckptStatus.textContent = "Not loaded: see the message above.";
      break;
  }
};

// ---- controls ------------------------------------------------------------------------------------

function readInt(input: HTMLInputElement | HTMLSelectElement, fallback: number): number {
  const v = Number(input.value);
  return Number.isFinite(v) ? Math.round(v) : fallback;
}

function sampleSettings(): SampleSettings {
  return { solver: ui.solver.value as SolverName, nfe: readInt(ui.nfe, 40), particles: 1000 };
}

function trainSettings(): TrainSettings {
  return {
    ...sampleSettings(),
    dataset: selectedDataset(),
    path: ui.path.value as PathName,
    steps: readInt(ui.steps, 2000),
    batchSize: readInt(ui.batchSize, 256),
    hidden: readInt(ui.hidden, 128),
    depth: readInt(ui.depth, 3),
    lr: Number(ui.lr.value),
    seed: 0,
  };
}

function enterMode(mode: "2d" | "image"): void {
  ui.app.classList.toggle("mode-2d", mode === "2d");
  ui.app.classList.toggle("mode-image", mode === "image");
  if (mode === "2d") requestAnimationFrame(redrawFlow);
}

ui.train.addEventListener("click", () => {
  clearError();
  if (state.status === "training") {
    send({ type: "stop" });
    return;
  }
  if (checkpointDataset !== null) {
    // Training starts a fresh model on the chosen data; the checkpoint stays loadable again.
    checkpointDataset = null;
    state.checkpoint = null;
    state.losses = [];
    state.step = 0;
    snapshot = null;
    ui.ckptStatus.textContent = "Load a 2-D or image model trained with the CLI.";
    refreshDataPreview();
  }
  const settings = trainSettings();
  if (state.status !== "done" || state.losses.length === 0) state.losses = [];
  state.totalSteps = state.step + settings.steps;
  setStatus("training");
  redrawLoss();
  send({ type: "train", settings, customPoints: settings.dataset === "custom" ? Float32Array.from(customPoints) : undefined });
});

ui.reset.addEventListener("click", () => {
  clearError();
  send({ type: "reset" });
  state.losses = [];
  state.step = 0;
  state.totalSteps = 0;
  state.stepsPerSecond = 0;
  snapshot = null;
  checkpointDataset = null;
  state.checkpoint = null;
  refreshDataPreview();
  setStatus(state.ready ? "idle" : "starting");
  redrawLoss();
  redrawFlow();
});

function modelSettingsChanged(): void {
  // A different dataset, path or network is a new model: the old pictures no longer apply.
  if (state.status === "training") send({ type: "stop" });
  send({ type: "reset" });
  snapshot = null;
  checkpointDataset = null;
  state.checkpoint = null;
  state.losses = [];
  state.step = 0;
  state.totalSteps = 0;
  ui.drawTools.hidden = selectedDataset() !== "custom";
  ui.flowCanvas.classList.toggle("drawing", selectedDataset() === "custom");
  refreshDataPreview();
  setStatus(state.ready ? "idle" : "starting");
  redrawLoss();
  redrawFlow();
}
for (const input of [ui.dataset, ui.path, ui.hidden, ui.depth, ui.lr, ui.batchSize]) input.addEventListener("change", modelSettingsChanged);

for (const input of [ui.solver, ui.nfe]) {
  input.addEventListener("change", () => {
    if (snapshot || state.status === "training") send({ type: "resample", sample: sampleSettings() });
  });
}

ui.play.addEventListener("click", () => setPlaying(!playing));
ui.time.addEventListener("input", () => {
  setPlaying(false);
  frame = Number(ui.time.value);
  redrawFlow();
});
ui.errorClose.addEventListener("click", clearError);

// Drawing your own data: press and drag to spray points around the pointer.
let drawing = false;
const rng = new Rng(99);
function sprayAt(event: PointerEvent): void {
  const at = flowView.dataAt(event);
  if (!at || customPoints.length / 2 >= MAX_CUSTOM_POINTS) return;
  for (let k = 0; k < 3; k++) customPoints.push(at[0] + 0.08 * rng.normal(), at[1] + 0.08 * rng.normal());
  ui.customCount.textContent = `${customPoints.length / 2} points`;
  redrawFlow();
}
ui.flowCanvas.addEventListener("pointerdown", (event) => {
  if (selectedDataset() !== "custom" || checkpointDataset) return;
  drawing = true;
  ui.flowCanvas.setPointerCapture(event.pointerId);
  sprayAt(event);
});
ui.flowCanvas.addEventListener("pointermove", (event) => {
  if (drawing) sprayAt(event);
});
ui.flowCanvas.addEventListener("pointerup", () => (drawing = false));
ui.flowCanvas.addEventListener("pointercancel", () => (drawing = false));
ui.clearPoints.addEventListener("click", () => {
  customPoints = [];
  ui.customCount.textContent = "0 points";
  modelSettingsChanged();
});

// ---- checkpoints and images --------------------------------------------------------------------------

let imageShape = { height: 28, width: 28, channels: 1 };
let imageClassNames: string[] = [];
let imageLabels: string[] = [];

async function loadFiles(list: FileList | File[]): Promise<void> {
  const files = Array.from(list);
  if (files.length === 0) return;
  clearError();
  ui.ckptStatus.textContent = `Reading ${files.map((f) => f.name).join(" + ")}…`;
  setStatus("loading");
  const loaded: LoadedFile[] = await Promise.all(files.map(async (f) => ({ name: f.name, bytes: await f.arrayBuffer() })));
  send({ type: "loadCheckpoint", files: loaded, sample: sampleSettings() });
}

ui.ckptInput.addEventListener("change", () => {
  const files = ui.ckptInput.files;
  if (files) void loadFiles(Array.from(files));
  ui.ckptInput.value = ""; // choosing the same files again should load them again
});
for (const target of [ui.dropzone, document.body]) {
  target.addEventListener("dragover", (event) => {
    event.preventDefault();
    ui.dropzone.classList.add("over");
  });
  target.addEventListener("dragleave", () => ui.dropzone.classList.remove("over"));
  target.addEventListener("drop", (event) => {
    event.preventDefault();
    event.stopPropagation();
    ui.dropzone.classList.remove("over");
    const files = event.dataTransfer?.files;
    if (files && files.length > 0) void loadFiles(files);
  });
}

ui.back2d.addEventListener("click", () => {
  state.checkpoint = null;
  enterMode("2d");
  modelSettingsChanged();
});

ui.imageClass.addEventListener("change", () => (ui.imageCount.disabled = ui.imageClass.value === "all"));
ui.guidance.addEventListener("input", () => (ui.guidanceValue.textContent = Number(ui.guidance.value).toFixed(1)));

ui.generate.addEventListener("click", () => {
  clearError();
  if (state.status === "generating") {
    send({ type: "stop" });
    return;
  }
  const label = ui.imageClass.value === "all" ? "all" : Number(ui.imageClass.value);
  const count = label === "all" ? imageClassNames.length : Math.max(1, Math.min(32, readInt(ui.imageCount, 8)));
  imageLabels = label === "all" ? imageClassNames.slice() : Array<string>(count).fill(imageClassNames[label] ?? String(label));
  state.images = { step: 0, totalSteps: 0, done: false, seconds: 0, nfe: 0 };
  setStatus("generating");
  send({
    type: "generateImages",
    label,
    count,
    guidance: Number(ui.guidance.value),
    solver: ui.solver.value as SolverName,
    nfe: readInt(ui.nfe, 40),
    seed: Math.floor(Math.random() * 1e9),
  });
});

// ---- start ---------------------------------------------------------------------------------------------

window.__flowmatch = {
  state,
  showFrame(i: number) {
    setPlaying(false);
    const last = snapshot ? snapshot.frames.length - 1 : 0;
    frame = i < 0 ? last : Math.min(i, last);
    redrawFlow();
  },
};

const requested = new URLSearchParams(location.search).get("device");
send({ type: "init", device: requested === "wasm" || requested === "webgpu" ? requested : "auto" });
refreshDataPreview();
redrawFlow();
redrawLoss();
refreshStats();
window.addEventListener("resize", () => {
  redrawFlow();
  redrawLoss();
});
requestAnimationFrame(animate);
