// The playground's compute worker (a module Web Worker): it owns the engine and runs training,
// sampling, checkpoint decoding and image generation with the core library, posting losses,
// particle trajectories, field grids and image steps back to the page (protocol.ts).
import { Rng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import { DEFAULT_ADAM, type HostParams } from "../core/optim.js";
import { FlowTrainer, type FlowBatch } from "../core/train.js";
import { getScheduler, pathCoefficients, type Scheduler } from "../core/paths.js";
import { getTimeSampler } from "../core/timeSamplers.js";
import { DEFAULT_MLP, initMlp, mlpFamily, mlpModel, type MlpConfig } from "../core/models/mlp.js";
import { unetFamily, unetModel, type UnetConfig } from "../core/models/unet.js";
import { modelField } from "../core/field.js";
import { EVALS_PER_STEP, odeint, type VelocityField } from "../core/solvers.js";
import { sampleToy, toyBounds, TOY_DATASETS, type ToyDatasetName } from "../data/toy2d.js";
import { checkParams } from "../io/checkpointFormat.js";
import { runTrainingLoop, type LoopOptions } from "../pipelines/loop.js";
import { tensorsToState } from "../pipelines/state.js";
import { vectorFieldGrid } from "../viz/scale.js";
import { readCheckpointFiles } from "./checkpointFiles.js";
import { fallBackToWasm, startWebEngine, webEngineDevice, type EngineStarted } from "./engineDevice.js";
import {
  CUSTOM_BOUNDS,
  FIELD_GRID_N,
  type Bounds,
  type FlowSnapshot,
  type FromWorker,
  type SampleSettings,
  type ToWorker,
  type TrainSettings,
} from "./protocol.js";

/** The part of DedicatedWorkerGlobalScope used here (tsconfig has the DOM lib, not WebWorker). */
interface WorkerScope {
  postMessage(message: FromWorker): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
}
const scope = globalThis as unknown as WorkerScope;
const post = (message: FromWorker): void => scope.postMessage(message);

/** Same noise for every snapshot, so successive pictures show the model changing, not the noise. */
const SNAPSHOT_SEED = 12345;
/** Frames per snapshot sent to the page (solver steps beyond this are thinned). */
const MAX_FRAMES = 26;
/** Std of the jitter added to drawn points, so a few clicks make a distribution, not a set of atoms. */
const CUSTOM_JITTER = 0.12;

/** A 2-D model the page can look at: being trained, or loaded from a checkpoint. */
interface Model2d {
  cfg: MlpConfig;
  bounds: Bounds;
  step: number;
  weights(): Promise<HostParams>;
}

interface TrainingRun {
  key: string;
  trainer: FlowTrainer;
  scheduler: Scheduler;
  settings: TrainSettings;
  custom: Float32Array | null;
  rng: Rng;
  /** Losses of the applied steps and the numbers of skipped steps, as the CLI's loop keeps them. */
  losses: number[];
  skipped: number[];
}

interface ImageModel {
  cfg: UnetConfig;
  ema: HostParams;
}

let run: TrainingRun | null = null;
let model2d: Model2d | null = null;
let imageModel: ImageModel | null = null;
let sampleSettings: SampleSettings = { solver: "rk4", nfe: 20, particles: 1000 };
let stopRequested = false;
let training = false;
let cancelImages = false;
/** Work runs one task at a time, in order; long tasks poll stopRequested/cancelImages. */
let queue: Promise<void> = Promise.resolve();

function enqueue(task: () => Promise<void>, title: string): void {
  queue = queue
    .then(task)
    .catch(async (err: unknown) => {
      // A failure on WebGPU that is not the user's input is the driver's or a kernel's: say so once,
      // move to Wasm and redo the task there (a training run on WebGPU arrays starts over).
      if (webEngineDevice() !== "webgpu" || err instanceof UserError || err instanceof Cancelled) throw err;
      if (run) {
        stopTraining();
        model2d = null;
      }
      announceEngine(await fallBackToWasm(err));
      await task();
    })
    .catch((err: unknown) => reportError(title, err));
}

function reportError(title: string, err: unknown): void {
  const message =
    err instanceof UserError
      ? err.message
      : `${err instanceof Error ? err.message : String(err)} (this looks like a bug; please report it)`;
  post({ type: "error", title, message });
}

class Cancelled extends Error {}

/** Yield to the event loop so "stop" and setting changes arrive during long loops. */
const nextTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

async function startEngine(device: "auto" | "wasm" | "webgpu"): Promise<void> {
  announceEngine(await startWebEngine(device));
}

function announceEngine(e: EngineStarted): void {
  if (e.fallback) post({ type: "engineFallback", message: `${e.fallback}; continuing on Wasm` });
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
  post({ type: "ready", device: e.device, threads: e.threads, isolated, adapter: e.adapter });
}

function runKey(s: TrainSettings, custom: Float32Array | null): string {
  return JSON.stringify([
    s.dataset,
    s.path,
    s.hidden,
    s.depth,
    s.lr,
    s.batchSize,
    s.seed,
    custom?.length ?? 0,
    custom ? Array.from(custom.subarray(0, 8)) : null,
  ]);
}

function checkTrainSettings(s: TrainSettings, custom: Float32Array | null): void {
  const positiveInt = (v: number, name: string, max: number) => {
    if (!Number.isInteger(v) || v < 1 || v > max) throw new UserError(`${name} must be a whole number from 1 to ${max}, got ${v}`);
  };
  positiveInt(s.steps, "Steps", 1_000_000);
  positiveInt(s.batchSize, "Batch size", 8192);
  positiveInt(s.hidden, "Hidden width", 2048);
  positiveInt(s.depth, "Depth", 16);
  positiveInt(s.nfe, "NFE", 1000);
  if (!(s.lr > 0 && s.lr < 1)) throw new UserError(`Learning rate must be between 0 and 1, got ${s.lr}`);
  if (s.dataset === "custom") {
    if (!custom || custom.length / 2 < 10) {
      throw new UserError(`draw at least 10 points on the plot first (you have ${custom ? custom.length / 2 : 0}); click and drag on it`);
    }
  } else if (!(TOY_DATASETS as readonly string[]).includes(s.dataset)) {
    throw new UserError(`unknown dataset "${s.dataset}"; choose one of: ${TOY_DATASETS.join(", ")}`);
  }
}

function nextBatch(r: TrainingRun): FlowBatch {
  const { batchSize: n, dataset } = r.settings;
  const t = getTimeSampler("uniform")(n, r.rng);
  const x0 = r.rng.normals(2 * n);
  let x1: Float32Array;
  if (dataset === "custom" && r.custom) {
    const m = r.custom.length / 2;
    x1 = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) {
      const j = r.rng.int(m);
      x1[2 * i] = r.custom[2 * j] + CUSTOM_JITTER * r.rng.normal();
      x1[2 * i + 1] = r.custom[2 * j + 1] + CUSTOM_JITTER * r.rng.normal();
    }
  } else {
    x1 = sampleToy(dataset as ToyDatasetName, n, r.rng);
  }
  return { x0, x1, t, coef: pathCoefficients(r.scheduler, t) };
}

async function train(settings: TrainSettings, custom: Float32Array | null): Promise<void> {
  checkTrainSettings(settings, custom);
  sampleSettings = { solver: settings.solver, nfe: settings.nfe, particles: settings.particles };
  const key = runKey(settings, custom);
  // Same data, path and model as the last run: continue it; anything else starts afresh.
  if (!run || run.key !== key) {
    run?.trainer.dispose();
    // The CLI's default network (Fourier features of x included) at the page's width and depth.
    const cfg: MlpConfig = { ...DEFAULT_MLP, hidden: settings.hidden, depth: settings.depth };
    const trainer = new FlowTrainer({
      model: mlpModel(cfg),
      params: initMlp(cfg, new Rng(settings.seed)),
      sampleShape: [2],
      adam: { ...DEFAULT_ADAM, lr: settings.lr },
      emaDecay: 0.999,
    });
    run = {
      key,
      trainer,
      scheduler: getScheduler(settings.path),
      settings,
      custom,
      rng: new Rng(settings.seed + 1),
      losses: [],
      skipped: [],
    };
    const current = run;
    const bounds = settings.dataset === "custom" ? CUSTOM_BOUNDS : toyBounds(settings.dataset);
    // Live pictures use the raw weights: early in a run the EMA still lags far behind.
    model2d = { cfg, bounds, step: 0, weights: () => current.trainer.hostParams("params") };
  }
  imageModel = null;
  const r = run;
  const model = model2d as Model2d;
  stopRequested = false;
  training = true;
  try {
    await trainLoop(r, model, settings);
  } finally {
    training = false;
  }
}

/**
 * Trains with the CLI's loop (pipelines/loop.ts: a step with a non-finite loss or gradient is
 * skipped, 20 in a row stop the run), in stretches between pictures: the loop ends a stretch when a
 * snapshot is due or the page asked to stop, and yields to the event loop on its own in between.
 */
async function trainLoop(r: TrainingRun, model: Model2d, settings: TrainSettings): Promise<void> {
  const total = r.trainer.stepCount + settings.steps;
  let posted = r.losses.length;
  let trainMs = 0;
  let trainSteps = 0;
  let stepStarted = 0;
  let lastPost = performance.now();
  let lastSnapshot = lastPost;
  let snapshotEveryMs = 1000;
  const rate = () => (trainMs > 0 ? (1000 * trainSteps) / trainMs : 0);
  const flush = () => {
    post({ type: "progress", step: r.trainer.stepCount, total, losses: r.losses.slice(posted), stepsPerSecond: rate() });
    posted = r.losses.length;
  };
  const loop: LoopOptions = {
    trainer: r.trainer,
    steps: total,
    losses: r.losses,
    skipped: r.skipped,
    lr: settings.lr,
    nextBatch: () => {
      stepStarted = performance.now();
      return nextBatch(r);
    },
    onProgress: (p) => {
      const now = performance.now();
      // The first step compiles the jitted program; it would drag the average down for short runs.
      if (p.step > 1) {
        trainMs += now - stepStarted;
        trainSteps++;
      }
      model.step = p.step;
      if (now - lastPost > 150) {
        flush();
        lastPost = now;
      }
    },
    shouldStop: () => stopRequested || performance.now() - lastSnapshot > snapshotEveryMs,
  };
  try {
    while (r.trainer.stepCount < total && !stopRequested) {
      await runTrainingLoop(loop);
      if (r.trainer.stepCount >= total || stopRequested) break;
      const snap = await snapshot(model, sampleSettings);
      post(snap);
      // Keep pictures to about a fifth of the time, so training still gets most of it.
      snapshotEveryMs = Math.max(1000, 4 * snap.ms);
      lastSnapshot = performance.now();
    }
  } catch (err) {
    flush();
    // The loop's advice names the CLI flag; on the page it is the "Learning rate" control.
    if (err instanceof UserError)
      throw new UserError(err.message.replace(/lower --lr \(now ([^)]*)\)/, "lower the learning rate (now $1), press Reset, then Train"));
    throw err;
  }
  flush();
  post(await snapshot(model, sampleSettings));
  post({ type: "trainDone", step: r.trainer.stepCount, stopped: stopRequested, stepsPerSecond: rate() });
}

/** Evenly thinned frame indices, always keeping the first and the last. */
function pickFrames(count: number, max: number): number[] {
  if (count <= max) return Array.from({ length: count }, (_, i) => i);
  return Array.from({ length: max }, (_, k) => Math.round((k * (count - 1)) / (max - 1)));
}

async function snapshot(model: Model2d, sample: SampleSettings): Promise<FlowSnapshot> {
  const started = performance.now();
  const f = modelField(mlpModel(model.cfg), await model.weights(), { sampleShape: [2] });
  try {
    const x0 = new Rng(SNAPSHOT_SEED).normals(2 * sample.particles);
    const times = [0];
    const states = [x0];
    await odeint(f.field, x0, {
      solver: sample.solver,
      nfe: sample.nfe,
      onStep: (t, x) => {
        times.push(t);
        states.push(x);
      },
    });
    const keep = pickFrames(times.length, MAX_FRAMES);
    const grid = vectorFieldGrid(model.bounds, FIELD_GRID_N);
    const fields: Float32Array[] = [];
    for (const i of keep) fields.push(await f.field(grid, times[i]));
    const steps = times.length - 1;
    return {
      type: "snapshot",
      step: model.step,
      bounds: model.bounds,
      times: keep.map((i) => times[i]),
      frames: keep.map((i) => states[i]),
      fields,
      label: `${sample.solver}, NFE ${steps * EVALS_PER_STEP[sample.solver]} (${steps} step${steps === 1 ? "" : "s"})`,
      ms: performance.now() - started,
    };
  } finally {
    f.dispose();
  }
}

function readMlpConfig(raw: unknown, source: string): MlpConfig {
  const cfg = mlpFamily.parseConfig(raw, source);
  if (cfg.dim !== 2) throw new UserError(`${source} is a ${cfg.dim}-D model; the playground draws 2-D models only`);
  return cfg;
}

async function loadCheckpoint(files: { name: string; bytes: ArrayBuffer }[], sample: SampleSettings): Promise<void> {
  const picked = await readCheckpointFiles(files);
  const { config, tensors, weightsName, configName } = picked;
  const mismatch =
    `"${configName}" (its "model" section) does not match the weights in "${weightsName}"; ` +
    `choose the ckpt.json saved with these weights`;
  if (config.kind === "2d") {
    const cfg = readMlpConfig(config.model, `"${configName}"`);
    checkParams(mlpFamily.paramShapes(cfg), tensors, `"${weightsName}"`, mismatch);
    const state = tensorsToState(tensors, `"${weightsName}"`);
    const dataset = typeof config.dataset === "string" ? config.dataset : "unknown";
    const bounds = (TOY_DATASETS as readonly string[]).includes(dataset) ? toyBounds(dataset as ToyDatasetName) : CUSTOM_BOUNDS;
    stopTraining();
    const ema = state.ema;
    model2d = { cfg, bounds, step: config.step, weights: async () => ema };
    imageModel = null;
    const path = typeof config.path === "string" ? config.path : "straight";
    post({
      type: "checkpoint2d",
      summary: `2-D model · ${dataset} · ${path} path · ${mlpFamily.describe(cfg)} · step ${config.step}`,
      dataset,
      bounds,
      losses: state.losses ?? [],
    });
    sampleSettings = sample;
    post(await snapshot(model2d, sample));
    return;
  }
  if (config.kind === "image") {
    const cfg = unetFamily.parseConfig(config.model, `"${configName}"`);
    checkParams(unetFamily.paramShapes(cfg), tensors, `"${weightsName}"`, mismatch);
    const state = tensorsToState(tensors, `"${weightsName}"`);
    const classNames = Array.isArray(config.classNames)
      ? config.classNames.map(String)
      : Array.from({ length: cfg.numClasses }, (_, i) => String(i));
    stopTraining();
    imageModel = { cfg, ema: state.ema };
    const dataset = typeof config.dataset === "string" ? config.dataset : "images";
    post({
      type: "checkpointImage",
      summary: `${dataset} · ${unetFamily.describe(cfg)} · step ${config.step}`,
      classNames,
      height: cfg.height,
      width: cfg.width,
      channels: cfg.inChannels,
      losses: state.losses ?? [],
    });
    return;
  }
  throw new UserError(`"${configName}" holds a '${config.kind}' model; the playground shows '2d' and 'image' checkpoints`);
}

function stopTraining(): void {
  run?.trainer.dispose();
  run = null;
}

async function generateImages(msg: Extract<ToWorker, { type: "generateImages" }>): Promise<void> {
  const m = imageModel;
  if (!m) throw new UserError("load an image checkpoint (ckpt.safetensors + ckpt.json from train-image) first");
  const { cfg } = m;
  const labels =
    msg.label === "all"
      ? Int32Array.from({ length: cfg.numClasses }, (_, i) => i)
      : new Int32Array(Math.max(1, Math.min(64, msg.count))).fill(msg.label);
  if (msg.label !== "all" && !(Number.isInteger(msg.label) && msg.label >= 0 && msg.label < cfg.numClasses)) {
    throw new UserError(`class ${msg.label} is out of range; this model has classes 0..${cfg.numClasses - 1}`);
  }
  if (!Number.isFinite(msg.guidance)) throw new UserError(`guidance must be a number, got ${msg.guidance}`);
  const n = labels.length;
  const sampleShape = [cfg.height, cfg.width, cfg.inChannels];
  const f = modelField(unetModel(cfg), m.ema, { sampleShape, labels, guidance: msg.guidance, nullLabel: cfg.numClasses });
  const totalSteps = Math.max(1, Math.floor(msg.nfe / EVALS_PER_STEP[msg.solver]));
  cancelImages = false;
  const started = performance.now();
  try {
    const x0 = new Rng(msg.seed).normals(n * cfg.height * cfg.width * cfg.inChannels);
    post({ type: "imageStep", t: 0, step: 0, totalSteps, n, pixels: x0 });
    const field: VelocityField = async (x, t) => {
      // Let "stop" arrive between network calls; a guided UNet call can take a second on Wasm.
      await nextTask();
      if (cancelImages) throw new Cancelled();
      return f.field(x, t);
    };
    let step = 0;
    const result = await odeint(field, x0, {
      solver: msg.solver,
      nfe: msg.nfe,
      onStep: (t, x) => post({ type: "imageStep", t, step: ++step, totalSteps, n, pixels: x }),
    });
    post({ type: "imagesDone", seconds: (performance.now() - started) / 1000, nfe: result.nfe, cancelled: false });
  } catch (err) {
    if (!(err instanceof Cancelled)) throw err;
    post({ type: "imagesDone", seconds: (performance.now() - started) / 1000, nfe: f.evaluations(), cancelled: true });
  } finally {
    f.dispose();
  }
}

scope.onmessage = (event) => {
  const msg = event.data;
  switch (msg.type) {
    case "init":
      enqueue(() => startEngine(msg.device), "Could not start the compute engine");
      break;
    case "train":
      stopRequested = true; // a running loop ends; the new request runs after it
      cancelImages = true;
      enqueue(() => train(msg.settings, msg.customPoints ?? null), "Training failed");
      break;
    case "stop":
      stopRequested = true;
      cancelImages = true;
      break;
    case "reset":
      stopRequested = true;
      enqueue(async () => {
        stopTraining();
        model2d = null;
      }, "Reset failed");
      break;
    case "resample":
      sampleSettings = msg.sample;
      // While training, the next snapshot picks up the new settings; otherwise draw one now.
      if (!training) {
        enqueue(async () => {
          if (model2d && !imageModel) post(await snapshot(model2d, sampleSettings));
        }, "Sampling failed");
      }
      break;
    case "loadCheckpoint":
      stopRequested = true;
      cancelImages = true;
      enqueue(() => loadCheckpoint(msg.files, msg.sample), "Could not load the checkpoint");
      break;
    case "generateImages":
      cancelImages = true;
      enqueue(() => generateImages(msg), "Image generation failed");
      break;
  }
};
