// Class-conditional flow matching on images (MNIST, Fashion-MNIST, user IDX/PNG folders): a UNet
// velocity field trained with label dropout for classifier-free guidance, checkpointed and
// resumable (run.ts). Batches: imageBatches.ts; sampling and export: imageSampling.ts.
import { join } from "node:path";
import { initEngine } from "../engine/index.js";
import { Rng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import type { HostParams } from "../core/optim.js";
import { getScheduler, pathCoefficients, type PathName } from "../core/paths.js";
import { getTimeSampler, type TimeSamplerName } from "../core/timeSamplers.js";
import { checkLrSchedule, type LrScheduleName } from "../core/lrSchedule.js";
import { recordedUnetOptions, unetFamily, unetOptions, type UnetConfig } from "../core/models/unet.js";
import { loadImageDataset, recordedImageTransforms, type ImageDataset, type ImageTransforms } from "../data/images.js";
import type { CheckpointConfig, Setting } from "../io/checkpoint.js";
import { writeFileAtomic } from "../io/atomic.js";
import { linePlot } from "../viz/index.js";
import type { TrainProgress } from "./loop.js";
import { checkRunFolder, flowName, openTrainingRun, reflowSetup, type RunResult } from "./run.js";
import { imageBatches } from "./imageBatches.js";
import { checkImageSampleMemory } from "./imageSampling.js";
import { assertTrainingFits, DEFAULT_TRAIN_BACKEND, type TrainBackend } from "./trainers.js";

/** The settings of an image training run, as its checkpoint records them (ckpt.json "train"). */
export interface ImageTrainConfig extends ImageTransforms {
  dataset: string;
  steps: number;
  batchSize: number;
  /** Adam learning rate (the peak of a schedule). */
  lr: number;
  /** How the rate moves over the run (absent in older checkpoints: constant). */
  lrSchedule?: LrScheduleName;
  /** Steps of linear warm-up to lr (absent in older checkpoints: 0). */
  warmup?: number;
  seed: number;
  path: PathName;
  timeSampler: TimeSamplerName;
  emaDecay: number;
  /** Probability of replacing a label by the null class (classifier-free guidance). */
  labelDropout: number;
  /** Use only the first N training images (0 = all). */
  limit: number;
  /** Mirror each training image left-right with probability 1/2 (seeded per step). */
  horizontalFlip?: boolean;
  /** Noise-image pairing in a batch: "ot" pairs by exact OT within each label (default independent). */
  coupling?: ImageCoupling;
}

/** Image couplings: class-aware OT only (OT across classes would skew each class's noise). */
export type ImageCoupling = "independent" | "ot";
/** Every ImageCoupling, in the order the CLI lists them. */
export const IMAGE_COUPLINGS: readonly ImageCoupling[] = ["independent", "ot"];

/** ckpt.json of an image run (kind "image"): the run, the dataset and its class names, the UNet, the path and the training settings. */
export interface ImageCheckpointConfig extends CheckpointConfig {
  kind: "image";
  runId: string;
  dataset: string;
  classNames: string[];
  model: UnetConfig;
  path: PathName;
  train: ImageTrainConfig;
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

/**
 * What train-image trains with unless told otherwise; the UNet is core/models/unet.ts's DEFAULT_UNET.
 * README "How the recipe was chosen" has the eval-image scores behind them (a constant rate beat a
 * cosine decay at equal steps) and what is not measured yet.
 */
export const IMAGE_TRAIN_DEFAULTS = {
  steps: 4000,
  batchSize: 32,
  lr: 2e-3,
  lrSchedule: "constant" as LrScheduleName,
  /** Steps of linear warm-up (--warmup). */
  warmup: 0,
  timeSampler: "uniform" as TimeSamplerName,
  emaDecay: 0.995,
  labelDropout: 0.1,
};

export function defaultImageOut(dataset: string): string {
  const name = dataset.includes(":") ? (dataset.split(/[\\/]/).filter(Boolean).pop() ?? "custom") : dataset;
  return join("outputs", "cfm", name.replace(/^(idx|folder):/, ""));
}

/** Trains (or continues) an image model; the result's `model` is what was saved. */
export async function trainImage(opts: ImageTrainOptions): Promise<RunResult<ImageCheckpointConfig, UnetConfig>> {
  if (!Number.isInteger(opts.steps) || opts.steps < 1) throw new UserError(`--steps must be a positive integer, got ${opts.steps}`);
  if (!(opts.labelDropout >= 0 && opts.labelDropout < 1))
    throw new UserError(`--label-dropout must be in [0, 1), got ${opts.labelDropout}`);
  const schedule = checkLrSchedule({ kind: opts.lrSchedule ?? "constant", lr: opts.lr, warmup: opts.warmup ?? 0, steps: opts.steps });
  const log = opts.onLog ?? (() => {});
  const out = opts.out ?? defaultImageOut(opts.dataset);
  // Refuse a wrong --resume/--force before loading a dataset.
  checkRunFolder({ out, resume: opts.resume, force: opts.force, log });
  await initEngine();
  const data =
    opts.data ??
    (await loadImageDataset(opts.dataset, {
      split: "train",
      limit: opts.limit > 0 ? opts.limit : undefined,
      onWarn: log,
      ...recordedImageTransforms(opts),
    }));
  const { resBlocks: _r, attention: _a, attentionHeads: _h, ...base } = opts.model;
  const cfg: UnetConfig = {
    ...base,
    numClasses: data.numClasses,
    inChannels: data.channels,
    height: data.height,
    width: data.width,
    // Only what differs from the defaults, so a default run's config reads like an older one.
    ...recordedUnetOptions(opts.model as UnetConfig),
  };
  const backend = opts.backend ?? DEFAULT_TRAIN_BACKEND;
  assertTrainingFits(backend, unetFamily, cfg, opts.batchSize);
  if (opts.finalSamples) checkImageSampleMemory(cfg, opts.finalSamples.perClass * cfg.numClasses, opts.finalSamples.guidance);
  const scheduler = getScheduler(opts.path);
  const sampleTimes = getTimeSampler(opts.timeSampler);
  const train: ImageTrainConfig = {
    dataset: opts.dataset,
    steps: opts.steps,
    batchSize: opts.batchSize,
    lr: opts.lr,
    // Recorded resolved, so a checkpoint says how its every step was trained.
    lrSchedule: schedule.kind,
    warmup: schedule.warmup,
    seed: opts.seed,
    path: opts.path,
    timeSampler: opts.timeSampler,
    emaDecay: opts.emaDecay,
    labelDropout: opts.labelDropout,
    limit: opts.limit,
    // Recorded only when used, so older checkpoints' settings stay the same.
    ...(opts.grey ? { grey: true } : {}),
    ...(opts.resize ? { resize: opts.resize } : {}),
    ...(opts.centerCrop ? { centerCrop: opts.centerCrop } : {}),
    ...(opts.horizontalFlip ? { horizontalFlip: true } : {}),
    ...(opts.coupling === "ot" ? { coupling: opts.coupling } : {}),
  };
  if (opts.coupling === "ot" && opts.coupledNoise)
    throw new Error("trainImage: coupledNoise (reflow) already fixes the pairs; coupling 'ot' does not apply");
  const run = await openTrainingRun({
    out,
    resume: opts.resume,
    force: opts.force,
    log,
    command: opts.command ?? "train-image",
    family: unetFamily,
    model: cfg,
    configAt: (step, runId): ImageCheckpointConfig => ({
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
    }),
    identity: setupImage,
  });
  const batches = imageBatches(data, {
    batchSize: opts.batchSize,
    seed: opts.seed,
    labelDropout: opts.labelDropout,
    sampleTimes,
    coupledNoise: opts.coupledNoise,
    horizontalFlip: opts.horizontalFlip,
    coupling: opts.coupling,
  });
  const result = await run.train({
    init: () => opts.initParams ?? unetFamily.init(cfg, new Rng(opts.seed)),
    backend,
    // Image training is bound by memory (peak RSS within 1.5x PyTorch's; batch 128 on a laptop): no
    // memory pattern. Its UNet steps run faster as one batch shard per thread (BackendOptions).
    backendOptions: { memPattern: false, dataParallel: true },
    lr: opts.lr,
    schedule,
    emaDecay: opts.emaDecay,
    steps: opts.steps,
    checkpointEvery: opts.checkpointEvery,
    onProgress: opts.onProgress,
    shouldStop: opts.shouldStop,
    nextBatch: (k) => {
      const { x0, x1, t, labels } = batches(k);
      return { x0, x1, t, coef: pathCoefficients(scheduler, t), labels };
    },
  });
  const { losses } = result;
  if (losses.length > 1)
    await writeFileAtomic(
      join(out, "loss.png"),
      linePlot([{ name: `${flowName(result.model.config)} loss`, values: losses }], {
        title: `${opts.dataset} training loss`,
        logY: true,
      }).toPng(),
    );
  return result;
}

function unetSettings(m: UnetConfig): Setting[] {
  const { resBlocks, attention, attentionHeads } = unetOptions(m);
  return [
    { flag: "--res-blocks", value: resBlocks },
    { flag: "--attention", value: attention.length > 0 ? attention.join(",") : "none" },
    { flag: "--attention-heads", value: attention.length > 0 ? attentionHeads : 1 },
  ];
}

/** What an image checkpoint's weights are: a resume must match every one of these (see openTrainingRun). */
export function setupImage(config: CheckpointConfig): Setting[] {
  const c = config as Partial<ImageCheckpointConfig>;
  const m = c.model;
  const value = (x: unknown): Setting["value"] => (typeof x === "string" || typeof x === "number" ? x : null);
  return [
    { flag: "--dataset", value: value(c.dataset) },
    { flag: "--limit", value: value(c.train?.limit ?? 0) },
    { flag: "--grey", value: c.train?.grey === true },
    { flag: "--resize", value: value(c.train?.resize ?? 0) },
    { flag: "--center-crop", value: value(c.train?.centerCrop ?? 0) },
    { flag: "--coupling", value: value(c.train?.coupling ?? "independent") },
    { flag: "--path", value: value(c.path) },
    { flag: "--channels", value: Array.isArray(m?.channels) ? m.channels.join(",") : null },
    { flag: "--time-emb-dim", value: value(m?.timeEmbDim) },
    { flag: "--groups", value: value(m?.groups) },
    // Absent in older checkpoints: their defaults.
    ...(m ? unetSettings(m) : []),
    // Not a flag: what the dataset gives; differs when a folder dataset changed since training.
    { flag: "image size and classes of the data", value: m ? `${m.height}x${m.width}x${m.inChannels}, ${m.numClasses} classes` : null },
    ...reflowSetup(config),
  ];
}
