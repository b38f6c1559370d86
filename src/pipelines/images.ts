// Class-conditional flow matching on images (MNIST, Fashion-MNIST, user IDX/PNG folders):
// a UNet velocity field trained with label dropout for classifier-free guidance, checkpointed
// and resumable, sampled to class grids and trajectory GIFs on the engine or on onnxruntime.
import { join } from "node:path";
import { initEngine } from "../engine/index.js";
import { Rng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import { DEFAULT_ADAM, type HostParams } from "../core/optim.js";
import type { TrainerOptions, VelocityModel } from "../core/train.js";
import { getScheduler, pathCoefficients, type PathName } from "../core/schedulers.js";
import { getTimeSampler, type TimeSamplerName } from "../core/timeSamplers.js";
import { modelField } from "../core/field.js";
import { odeint, type SolverName, type VelocityField } from "../core/solvers.js";
import { initUnet, unetApply, unetParamCount, unetParamShapes, type UnetConfig } from "../core/models/unet.js";
import { assertEngineFits, unetForwardBytes, unetTrainBytes } from "../core/memory.js";
import type { ImageLayout } from "../core/models/layers.js";
import { loadImageDataset, type ImageDataset } from "../data/images.js";
import { loadCheckpoint, checkParams, type CheckpointConfig, type Setting } from "../io/checkpoint.js";
import { writeFileAtomic } from "../io/atomic.js";
import { exportUnetOnnx } from "../io/onnx.js";
import { createOnnxField, onnxVelocityField } from "../io/onnxField.js";
import { encodeGif, imageGrid, linePlot } from "../viz/index.js";
import { stateToTensors, tensorsToState } from "./state.js";
import { stepRng } from "./toy2d.js";
import { runTrainingLoop, type TrainProgress } from "./loop.js";
import { checkRunFolder, openTrainingRun, reflowSetup } from "./run.js";
import { assertTrainingFits, createTrainer, DEFAULT_TRAIN_BACKEND, type TrainBackend } from "./trainers.js";

export interface ImageTrainConfig {
  dataset: string;
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
  path: PathName;
  timeSampler: TimeSamplerName;
  emaDecay: number;
  /** Probability of replacing a label by the null class (classifier-free guidance). */
  labelDropout: number;
  /** Use only the first N training images (0 = all). */
  limit: number;
}

export interface ImageCheckpointConfig extends CheckpointConfig {
  kind: "image";
  runId: string;
  dataset: string;
  classNames: string[];
  model: UnetConfig;
  path: PathName;
  train: ImageTrainConfig;
}

/** The UNet as a VelocityModel; layout "nchw" for steps traced to onnxruntime (native Conv), see ImageLayout. */
export function unetModel(cfg: UnetConfig, layout: ImageLayout = "hbwc"): VelocityModel {
  return { apply: (params, x, t, labels) => unetApply(params, x, t, labels as NonNullable<typeof labels>, cfg, layout) };
}

/** Host init as HostParams (shape + data). */
export function initUnetParams(cfg: UnetConfig, rng: Rng): HostParams {
  const shapes = unetParamShapes(cfg);
  const data = initUnet(cfg, rng);
  const out: HostParams = {};
  for (const [name, shape] of Object.entries(shapes)) out[name] = { shape, data: data[name] };
  return out;
}

export interface ImageTrainOptions extends ImageTrainConfig {
  model: Omit<UnetConfig, "numClasses" | "inChannels" | "height" | "width">;
  out?: string;
  checkpointEvery: number;
  /** Continue from the checkpoint in out (which must exist). */
  resume: boolean;
  /** Replace a checkpoint already in out (otherwise refused). */
  force?: boolean;
  /** The command, for messages (default "train-image"). */
  command?: string;
  onProgress?: (p: TrainProgress) => void;
  onLog?: (line: string) => void;
  shouldStop?: () => boolean;
  /** Pre-loaded dataset (tests, reflow); otherwise loaded from `dataset`. */
  data?: ImageDataset;
  /** Reflow: noise coupled to each image of `data` (x0 of image i is noise[i]) instead of fresh noise. */
  coupledNoise?: Float32Array;
  /** Start from these weights (reflow's warm start) instead of a fresh initialisation. */
  initParams?: HostParams;
  /** Extra fields recorded in the checkpoint config (e.g. the reflow teacher). */
  extraConfig?: Record<string, unknown>;
  /** Images per class and guidance the caller will sample on the engine after training: checked for memory before training starts. */
  finalSamples?: { perClass: number; guidance: number };
  /** What runs the training step (default ort); checkpoints are the same either way. */
  backend?: TrainBackend;
}

export function defaultImageOut(dataset: string): string {
  const name = dataset.includes(":") ? (dataset.split(/[\\/]/).filter(Boolean).pop() ?? "custom") : dataset;
  return join("outputs", "cfm", name.replace(/^(idx|folder):/, ""));
}

/** Refuses, before any allocation, sampling n images at once on the engine (guidance doubles the batch) when it cannot fit. */
export function checkImageSampleMemory(cfg: UnetConfig, n: number, guidance: number): void {
  const batch = guidance === 1 ? n : 2 * n;
  assertEngineFits(
    unetForwardBytes(cfg, batch),
    `sampling ${n} images of ${cfg.height}x${cfg.width} at once${guidance === 1 ? "" : " with guidance (two network passes each)"}`,
    "use a smaller --per-class or --class list, or --runtime onnx",
  );
}

export async function trainImage(opts: ImageTrainOptions): Promise<{ out: string; startStep: number; step: number; losses: number[]; stopped: boolean }> {
  if (!Number.isInteger(opts.steps) || opts.steps < 1) throw new UserError(`--steps must be a positive integer, got ${opts.steps}`);
  if (!(opts.labelDropout >= 0 && opts.labelDropout < 1)) throw new UserError(`--label-dropout must be in [0, 1), got ${opts.labelDropout}`);
  const log = opts.onLog ?? (() => {});
  const out = opts.out ?? defaultImageOut(opts.dataset);
  // Refuse a wrong --resume/--force before loading a dataset.
  checkRunFolder({ out, resume: opts.resume, force: opts.force, log });
  await initEngine();
  const data = opts.data ?? (await loadImageDataset(opts.dataset, { split: "train", limit: opts.limit > 0 ? opts.limit : undefined, onWarn: log }));
  const cfg: UnetConfig = { ...opts.model, numClasses: data.numClasses, inChannels: data.channels, height: data.height, width: data.width } as UnetConfig;
  const backend = opts.backend ?? DEFAULT_TRAIN_BACKEND;
  assertTrainingFits(
    backend,
    unetTrainBytes(cfg, opts.batchSize),
    `training a UNet of ${unetParamCount(cfg).toLocaleString("en-US")} parameters on ${data.height}x${data.width} images in batches of ${opts.batchSize}`,
    "use a smaller --batch-size or --channels, or smaller images",
  );
  if (opts.finalSamples) checkImageSampleMemory(cfg, opts.finalSamples.perClass * cfg.numClasses, opts.finalSamples.guidance);
  // onnxruntime gets the engine's conv primitive (native Conv/ConvTranspose); jax-js on Wasm the row bands.
  const model = unetModel(cfg, backend === "ort" ? "nchw" : "hbwc");
  const scheduler = getScheduler(opts.path);
  const sampleTimes = getTimeSampler(opts.timeSampler);
  const sampleShape = [data.height, data.width, data.channels];
  const per = data.height * data.width * data.channels;

  const train: ImageTrainConfig = {
    dataset: opts.dataset,
    steps: opts.steps,
    batchSize: opts.batchSize,
    lr: opts.lr,
    seed: opts.seed,
    path: opts.path,
    timeSampler: opts.timeSampler,
    emaDecay: opts.emaDecay,
    labelDropout: opts.labelDropout,
    limit: opts.limit,
  };
  const configAt = (step: number, runId: string): ImageCheckpointConfig => ({
    format: "flowmatch-checkpoint",
    version: 1,
    kind: "image",
    runId,
    step,
    dataset: opts.dataset,
    classNames: data.classNames,
    model: cfg,
    path: opts.path,
    train,
    ...opts.extraConfig,
  });
  const run = await openTrainingRun({
    out,
    resume: opts.resume,
    force: opts.force,
    log,
    kind: "image",
    command: opts.command ?? "train-image",
    next: configAt(0, ""),
    identity: setupImage,
    shapes: unetParamShapes(cfg),
  });
  const losses = run.losses;
  const skipped = run.skipped;
  const trainerOptions = {
    model,
    params: run.resume?.params ?? opts.initParams ?? initUnetParams(cfg, new Rng(opts.seed)),
    sampleShape,
    adam: { ...DEFAULT_ADAM, lr: opts.lr },
    emaDecay: opts.emaDecay,
    resume: run.resume,
  };
  // Image training is bound by memory (peak RSS within 1.5x PyTorch's; batch 128 on a laptop): no memory pattern.
  const trainer = await createTrainer(backend, trainerOptions, { memPattern: false });
  const save = async () => run.save(configAt(trainer.stepCount, run.runId), stateToTensors({ ...(await trainer.hostState()), losses, skipped }));

  const n = opts.batchSize;
  const x1 = new Float32Array(n * per);
  const labels = new Int32Array(n);
  let stopped = false;
  try {
    ({ stopped } = await runTrainingLoop({
      trainer,
      steps: opts.steps,
      losses,
      skipped,
      lr: opts.lr,
      save,
      checkpointEvery: opts.checkpointEvery,
      onProgress: opts.onProgress,
      onLog: log,
      shouldStop: opts.shouldStop,
      nextBatch: (k) => {
        // Epoch-wise shuffles derived from (seed, epoch): a resumed run sees the same batches.
        for (let i = 0; i < n; i++) {
          const flat = k * n + i;
          const epoch = Math.floor(flat / data.n);
          const idx = epochPermutation(opts.seed, epoch, data.n)[flat % data.n];
          x1.set(data.images.subarray(idx * per, (idx + 1) * per), i * per);
          labels[i] = data.labels[idx];
        }
        const rng = stepRng(opts.seed, k);
        for (let i = 0; i < n; i++) if (rng.uniform() < opts.labelDropout) labels[i] = data.numClasses;
        const t = sampleTimes(n, rng);
        let x0 = rng.normals(n * per);
        const noise = opts.coupledNoise;
        if (noise) {
          // Same indices as x1 above: each image keeps the noise it was generated from.
          x0 = new Float32Array(n * per);
          for (let i = 0; i < n; i++) {
            const flat = k * n + i;
            const idx = epochPermutation(opts.seed, Math.floor(flat / data.n), data.n)[flat % data.n];
            x0.set(noise.subarray(idx * per, (idx + 1) * per), i * per);
          }
        }
        return { x0, x1, t, coef: pathCoefficients(scheduler, t), labels };
      },
    }));
  } finally {
    trainer.dispose();
  }
  if (losses.length > 1) await writeFileAtomic(join(out, "loss.png"), linePlot([{ name: "CFM loss", values: losses }], { title: `${opts.dataset} training loss`, logY: true }).toPng());
  return { out, startStep: run.startStep, step: trainer.stepCount, losses, stopped };
}

/** What an image checkpoint's weights are: a resume must match every one of these (see openTrainingRun). */
export function setupImage(config: CheckpointConfig): Setting[] {
  const c = config as Partial<ImageCheckpointConfig>;
  const m = c.model;
  const value = (x: unknown): Setting["value"] => (typeof x === "string" || typeof x === "number" ? x : null);
  return [
    { flag: "--dataset", value: value(c.dataset) },
    { flag: "--limit", value: value(c.train?.limit ?? 0) },
    { flag: "--path", value: value(c.path) },
    { flag: "--channels", value: Array.isArray(m?.channels) ? m.channels.join(",") : null },
    { flag: "--time-emb-dim", value: value(m?.timeEmbDim) },
    { flag: "--groups", value: value(m?.groups) },
    // Not a flag: what the dataset gives; differs when a folder dataset changed since training.
    { flag: "image size and classes of the data", value: m ? `${m.height}x${m.width}x${m.inChannels}, ${m.numClasses} classes` : null },
    ...reflowSetup(config),
  ];
}

const permCache = new Map<string, Uint32Array>();
function epochPermutation(seed: number, epoch: number, n: number): Uint32Array {
  const key = `${seed}:${epoch}:${n}`;
  let p = permCache.get(key);
  if (!p) {
    if (permCache.size > 4) permCache.clear();
    p = new Rng((seed * 7919 + epoch * 104729 + 1) >>> 0).permutation(n);
    permCache.set(key, p);
  }
  return p;
}

export interface LoadedImage {
  config: ImageCheckpointConfig;
  params: HostParams;
  ema: HostParams;
}

export async function loadImageModel(path: string, command = "this command"): Promise<LoadedImage> {
  const { config, tensors } = await loadCheckpoint(path, { kind: "image", command });
  const cfg = config as ImageCheckpointConfig;
  checkParams(unetParamShapes(cfg.model), tensors, path, "The checkpoint's UNet config (ckpt.json \"model\") does not match its weights; re-run training.");
  const state = tensorsToState(tensors, path);
  return { config: cfg, params: state.params, ema: state.ema };
}

export interface ImageSampleOptions {
  perClass: number;
  classes?: number[];
  nfe: number;
  solver: SolverName;
  guidance: number;
  seed: number;
  runtime: "engine" | "onnx";
  frames: number;
  out: string;
}

/** A guided velocity field for the image model on the chosen runtime. */
export async function imageField(loaded: LoadedImage, labels: Int32Array, guidance: number, runtime: "engine" | "onnx"): Promise<{ field: VelocityField; dispose: () => void }> {
  const cfg = loaded.config.model;
  const sampleShape = [cfg.height, cfg.width, cfg.inChannels];
  if (runtime === "engine") {
    await initEngine();
    const f = modelField(unetModel(cfg), loaded.ema, { sampleShape, labels, guidance, nullLabel: cfg.numClasses });
    return { field: f.field, dispose: () => f.dispose() };
  }
  const data: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(loaded.ema)) data[k] = v.data;
  // Guidance inside the graph (one run per evaluation); w = 1 is the plain conditional network.
  const guided = guidance !== 1;
  const session = await createOnnxField(await exportUnetOnnx(data, cfg, { guided }), {});
  const field = onnxVelocityField(session, { sampleShape, labels, guidance: guided ? guidance : undefined });
  return { field, dispose: () => session.release() };
}

export async function sampleImages(loaded: LoadedImage, opts: ImageSampleOptions): Promise<{ files: string[]; images: Float32Array; seconds: number; nfe: number }> {
  const cfg = loaded.config.model;
  const classes = opts.classes ?? Array.from({ length: cfg.numClasses }, (_, i) => i);
  for (const c of classes) {
    if (!Number.isInteger(c) || c < 0 || c >= cfg.numClasses) throw new UserError(`--class ${c} is out of range; this model has classes 0..${cfg.numClasses - 1}`);
  }
  const labels = Int32Array.from(classes.flatMap((c) => Array<number>(opts.perClass).fill(c)));
  const n = labels.length;
  const per = cfg.height * cfg.width * cfg.inChannels;
  if (opts.runtime === "engine") checkImageSampleMemory(cfg, n, opts.guidance);
  const x0 = new Rng(opts.seed).normals(n * per);
  const f = await imageField(loaded, labels, opts.guidance, opts.runtime);
  const saveAt = Array.from({ length: opts.frames }, (_, i) => i / (opts.frames - 1));
  const started = performance.now();
  let result;
  try {
    result = await odeint(f.field, x0, { solver: opts.solver, nfe: opts.nfe, saveAt });
  } finally {
    f.dispose();
  }
  const seconds = (performance.now() - started) / 1000;
  const rowLabels = classes.map((c) => loaded.config.classNames[c] ?? String(c));
  const grid = (x: Float32Array) =>
    imageGrid(x, { n, height: cfg.height, width: cfg.width, channels: cfg.inChannels === 3 ? 3 : 1, cols: opts.perClass, scale: 2, range: "minus1to1", rowLabels });
  const files: string[] = [];
  const samplesPath = join(opts.out, "samples.png");
  await writeFileAtomic(samplesPath, grid(result.x).toPng());
  files.push(samplesPath);
  const frames = (result.trajectory?.xs ?? [result.x]).map(grid);
  const held = [...frames, ...Array<(typeof frames)[number]>(8).fill(frames[frames.length - 1])];
  const gifPath = join(opts.out, "trajectory.gif");
  await writeFileAtomic(gifPath, encodeGif(held, { delayMs: 100, loop: true }));
  files.push(gifPath);
  return { files, images: result.x, seconds, nfe: result.nfe };
}

export async function exportOnnx(loaded: LoadedImage, path: string, opts: { guided?: boolean } = {}): Promise<void> {
  const data: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(loaded.ema)) data[k] = v.data;
  await writeFileAtomic(path, await exportUnetOnnx(data, loaded.config.model, opts));
}
