// The playground page: wires the compute worker to the views. Nothing heavy runs here; the worker
// (worker.ts) trains and samples and the page draws what it sends. The parts: pageState.ts (what
// the page knows, its elements, status and errors), flowPanel.ts (the 2-D flow view and drawing
// data), checkpointViewer.ts (loading checkpoints, the image view); this file holds the training
// controls and the conversation with the worker.
import type { PathName } from "../core/paths.js";
import type { SolverName } from "../core/solvers.js";
import { CheckpointViewer } from "./checkpointViewer.js";
import { FlowPanel } from "./flowPanel.js";
import { clearError, enterMode, readInt, redrawLoss, refreshStats, resetProgress, setStatus, showError, state, ui } from "./pageState.js";
import type { FromWorker, SampleSettings, ToWorker, TrainSettings } from "./protocol.js";

export type { PlaygroundHook, PlaygroundState } from "./pageState.js";

const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const send = (msg: ToWorker): void => worker.postMessage(msg);

function sampleSettings(): SampleSettings {
  return { solver: ui.solver.value as SolverName, nfe: readInt(ui.nfe, 40), particles: 1000 };
}

function trainSettings(): TrainSettings {
  return {
    ...sampleSettings(),
    dataset: flow.selectedDataset(),
    path: ui.path.value as PathName,
    steps: readInt(ui.steps, 2000),
    batchSize: readInt(ui.batchSize, 256),
    hidden: readInt(ui.hidden, 128),
    depth: readInt(ui.depth, 3),
    lr: Number(ui.lr.value),
    seed: 0,
  };
}

function show2d(): void {
  enterMode("2d");
  requestAnimationFrame(() => flow.redraw());
}

/** A different dataset, path or network is a new model: the old pictures no longer apply. */
function modelSettingsChanged(): void {
  if (state.status === "training") send({ type: "stop" });
  send({ type: "reset" });
  state.checkpoint = null;
  resetProgress();
  flow.clear();
  setStatus(state.ready ? "idle" : "starting");
  redrawLoss();
  flow.redraw();
}

const flow = new FlowPanel(modelSettingsChanged);
const viewer = new CheckpointViewer(send, sampleSettings);

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
      state.adapter = msg.adapter;
      ui.badge.textContent =
        msg.device === "webgpu"
          ? `engine: WebGPU · ${msg.adapter ?? "unknown adapter"}`
          : `engine: Wasm · ${msg.threads} thread${msg.threads === 1 ? "" : "s"}`;
      ui.badge.classList.add("ok");
      setStatus("idle");
      flow.redraw();
      break;
    case "engineFallback":
      // Once per session (the worker never returns to WebGPU); a run on WebGPU starts over on Wasm.
      state.engineFallback = msg.message;
      state.losses = [];
      state.step = 0;
      showError("WebGPU failed", msg.message);
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
      flow.showSnapshot(msg);
      break;
    case "trainDone":
      state.stepsPerSecond = msg.stepsPerSecond;
      setStatus("done");
      break;
    case "checkpoint2d":
      state.checkpoint = { kind: "2d", summary: msg.summary };
      ui.ckptStatus.textContent = `Loaded: ${msg.summary}`;
      show2d();
      resetProgress(msg.losses);
      flow.showCheckpoint(msg.dataset);
      redrawLoss();
      setStatus("done");
      break;
    case "checkpointImage":
      viewer.showImageCheckpoint(msg);
      break;
    case "imageStep":
      viewer.showImageStep(msg);
      break;
    case "imagesDone":
      viewer.imagesDone(msg);
      break;
    case "error":
      showError(msg.title, msg.message);
      setStatus(state.checkpoint || state.losses.length ? "done" : "idle");
      if (msg.title.includes("checkpoint")) ui.ckptStatus.textContent = "Not loaded: see the message above.";
      break;
  }
};

ui.train.addEventListener("click", () => {
  clearError();
  if (state.status === "training") {
    send({ type: "stop" });
    return;
  }
  if (flow.showingCheckpoint) {
    // Training starts a fresh model on the chosen data; the checkpoint stays loadable again.
    state.checkpoint = null;
    state.losses = [];
    state.step = 0;
    flow.clear();
    ui.ckptStatus.textContent = "Load a 2-D or image model trained with the CLI.";
  }
  const settings = trainSettings();
  if (state.status !== "done" || state.losses.length === 0) state.losses = [];
  state.totalSteps = state.step + settings.steps;
  setStatus("training");
  redrawLoss();
  send({ type: "train", settings, customPoints: settings.dataset === "custom" ? flow.custom() : undefined });
});

ui.reset.addEventListener("click", () => {
  clearError();
  send({ type: "reset" });
  resetProgress();
  state.checkpoint = null;
  flow.clear();
  setStatus(state.ready ? "idle" : "starting");
  redrawLoss();
  flow.redraw();
});

for (const input of [ui.dataset, ui.path, ui.hidden, ui.depth, ui.lr, ui.batchSize]) input.addEventListener("change", modelSettingsChanged);

for (const input of [ui.solver, ui.nfe]) {
  input.addEventListener("change", () => {
    if (flow.hasSnapshot || state.status === "training") send({ type: "resample", sample: sampleSettings() });
  });
}

ui.errorClose.addEventListener("click", clearError);

ui.back2d.addEventListener("click", () => {
  state.checkpoint = null;
  show2d();
  modelSettingsChanged();
});

window.__flowmatch = { state, showFrame: (i) => flow.showFrame(i) };

const requested = new URLSearchParams(location.search).get("device");
send({ type: "init", device: requested === "wasm" || requested === "webgpu" ? requested : "auto" });
flow.refreshData();
flow.redraw();
redrawLoss();
refreshStats();
window.addEventListener("resize", () => {
  flow.redraw();
  redrawLoss();
});
flow.animate();
