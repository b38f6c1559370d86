// The 2-D conditional flow-matching pipeline: train an MLP velocity field on a toy dataset and
// checkpoint it (run.ts). Sampling and pictures: toy2dSampling.ts.
import { initEngine } from "../engine/index.js";
import { Rng, stepRng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import { getScheduler, pathCoefficients, type PathName } from "../core/paths.js";
import { getTimeSampler, type TimeSamplerName } from "../core/timeSamplers.js";
import { checkLrSchedule, type LrScheduleName } from "../core/lrSchedule.js";
import { otCouple, type CouplingName } from "../core/coupling.js";
import { mlpFamily, type MlpConfig } from "../core/models/mlp.js";
import { sampleToy, type ToyDatasetName } from "../data/toy2d.js";
import type { CheckpointConfig, Setting } from "../io/checkpoint.js";
import type { TrainProgress } from "./loop.js";
import { sinkhornCouple } from "../core/sinkhorn.js";
import { bridgeBatch, checkBridgeSigma } from "../core/bridges.js";
import "../data/pictureFiles.js"; // image:PATH.png datasets read files (Node only)
import { openTrainingRun, reflowSetup } from "./run.js";
import type { Loaded2d } from "./model.js";
import { assertTrainingFits, DEFAULT_TRAIN_BACKEND, type TrainBackend } from "./trainers.js";

/** The settings of a 2-D training run, as its checkpoint records them (ckpt.json "train"). */
export interface Toy2dTrainConfig {
  dataset: ToyDatasetName;
  steps: number;
  batchSize: number;
  /** Adam learning rate (the peak of a schedule). */
  lr: number;
  /** How the rate moves over the run (default constant). */
  lrSchedule?: LrScheduleName;
  /** Steps of linear warm-up to lr (default 0). */
  warmup?: number;
  seed: number;
  path: PathName;
  timeSampler: TimeSamplerName;
  emaDecay: number;
  model: MlpConfig;
  /** How noise and data are paired in a batch: independently, or by minibatch optimal transport. */
  coupling: CouplingName;
  /** Entropic regularisation of the sinkhorn coupling (squared-distance units). */
  reg?: number;
  /** Brownian-bridge noise sigma sqrt(t (1 - t)) on the straight path (Schrodinger-bridge CFM); 0 = none. */
  bridgeSigma?: number;
}

/**
 * What `npm start` (train2d) trains with unless told otherwise, chosen by measurement on checkerboard
 * (README, "How the defaults were chosen"); the model is core/models/mlp.ts's DEFAULT_MLP.
 */
export const TRAIN2D_DEFAULTS = {
  steps: 28000,
  batchSize: 512,
  lr: 4e-3,
  lrSchedule: "cosine" as LrScheduleName,
  warmup: 1000,
  timeSampler: "late" as TimeSamplerName,
  emaDecay: 0.999,
};

/** The warm-up of a run that does not pass --warmup: the default, but at most a tenth of its steps. */
export function defaultWarmup(steps: number): number {
  return Math.min(TRAIN2D_DEFAULTS.warmup, Math.floor(steps / 10));
}

/** ckpt.json of a 2-D run (kind "2d"): the run, the dataset, the MLP, the path and the training settings. */
export interface Toy2dCheckpointConfig extends CheckpointConfig {
  kind: "2d";
  /** Identifies one training run across its saves and resumes. */
  runId: string;
  dataset: ToyDatasetName;
  model: MlpConfig;
  path: PathName;
  train: Toy2dTrainConfig;
}

export type { TrainProgress };

export interface Toy2dTrainOptions extends Toy2dTrainConfig {
  out: string;
  /** Write a checkpoint every this many steps (and at the end). */
  checkpointEvery: number;
  /** Continue from the checkpoint in out (which must exist). */
  resume: boolean;
  /** Replace a checkpoint already in out (otherwise refused). */
  force?: boolean;
  onProgress?: (p: TrainProgress) => void;
  onLog?: (line: string) => void;
  /** Polled between steps; when it returns true the run checkpoints and stops early. */
  shouldStop?: () => boolean;
  /** What runs the training step (default ort); checkpoints are the same either way. */
  backend?: TrainBackend;
}

export interface Toy2dTrainResult {
  checkpointDir: string;
  /** The step training started from (the checkpoint's when resuming). */
  startStep: number;
  step: number;
  losses: number[];
  stopped: boolean;
  /** The trained model as saved (no need to read the checkpoint back). */
  model: Loaded2d;
}

/** Refuses, before any allocation, a model and batch whose training step cannot fit in the engine. */
export function checkTrain2dMemory(model: MlpConfig, batchSize: number, backend: TrainBackend = DEFAULT_TRAIN_BACKEND): void {
  assertTrainingFits(backend, mlpFamily, model, batchSize);
}

export async function trainToy2d(opts: Toy2dTrainOptions): Promise<Toy2dTrainResult> {
  if (!Number.isInteger(opts.steps) || opts.steps < 1) throw new UserError(`--steps must be a positive integer, got ${opts.steps}`);
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1)
    throw new UserError(`--batch-size must be a positive integer, got ${opts.batchSize}`);
  const schedule = checkLrSchedule({ kind: opts.lrSchedule ?? "constant", lr: opts.lr, warmup: opts.warmup ?? 0, steps: opts.steps });
  const bridgeSigma = checkBridgeSigma(opts.bridgeSigma ?? 0);
  if (bridgeSigma > 0 && opts.path !== "straight")
    throw new UserError(`--bridge-sigma adds Brownian-bridge noise to the straight path; use --path straight (got ${opts.path})`);
  if (opts.coupling === "sinkhorn" && !(opts.reg !== undefined && opts.reg > 0))
    throw new UserError("--coupling sinkhorn needs --reg EPS, a positive entropic regularisation (e.g. 0.1)");
  if (opts.coupling !== "sinkhorn" && opts.reg !== undefined)
    throw new UserError(`--reg applies to --coupling sinkhorn only (got --coupling ${opts.coupling})`);
  checkTrain2dMemory(opts.model, opts.batchSize, opts.backend);
  await initEngine();
  const log = opts.onLog ?? (() => {});
  const scheduler = getScheduler(opts.path);
  const sampleTimes = getTimeSampler(opts.timeSampler);
  const run = await openTrainingRun({
    out: opts.out,
    resume: opts.resume,
    force: opts.force,
    log,
    command: "train2d",
    family: mlpFamily,
    model: opts.model,
    configAt: (step, runId): Toy2dCheckpointConfig => ({
      format: "flowmatch-checkpoint",
      version: 1,
      kind: "2d",
      runId,
      step,
      dataset: opts.dataset,
      model: opts.model,
      path: opts.path,
      train: pick(opts),
    }),
    identity: setup2d,
  });
  const n = opts.batchSize;
  const result = await run.train({
    init: () => mlpFamily.init(opts.model, new Rng(opts.seed)),
    backend: opts.backend ?? DEFAULT_TRAIN_BACKEND,
    lr: opts.lr,
    schedule,
    emaDecay: opts.emaDecay,
    steps: opts.steps,
    checkpointEvery: opts.checkpointEvery,
    onProgress: opts.onProgress,
    shouldStop: opts.shouldStop,
    nextBatch: (done) => {
      const rng = stepRng(opts.seed, done);
      const t = sampleTimes(n, rng);
      let x0 = rng.normals(n * opts.model.dim);
      let x1 = sampleToy(opts.dataset, n, rng);
      if (opts.coupling === "ot") x1 = otCouple(x0, x1, opts.model.dim).x1;
      if (opts.coupling === "sinkhorn") ({ x0, x1 } = sinkhornCouple(x0, x1, opts.model.dim, rng, { reg: opts.reg as number }));
      if (bridgeSigma > 0) return bridgeBatch(x0, x1, t, bridgeSigma, rng);
      return { x0, x1, t, coef: pathCoefficients(scheduler, t) };
    },
  });
  return {
    checkpointDir: opts.out,
    startStep: result.startStep,
    step: result.step,
    losses: result.losses,
    stopped: result.stopped,
    model: result.model,
  };
}

function pick(o: Toy2dTrainConfig): Toy2dTrainConfig {
  const { dataset, steps, batchSize, lr, seed, path, timeSampler, emaDecay, model, coupling, reg, bridgeSigma } = o;
  // The schedule is recorded resolved, so a checkpoint says how its every step was trained.
  const lrSchedule = o.lrSchedule ?? "constant";
  const warmup = o.warmup ?? 0;
  return {
    dataset,
    steps,
    batchSize,
    lr,
    lrSchedule,
    warmup,
    seed,
    path,
    timeSampler,
    emaDecay,
    model,
    coupling,
    ...(reg === undefined ? {} : { reg }),
    ...(bridgeSigma ? { bridgeSigma } : {}),
  };
}

/** What a 2-D checkpoint's weights are: a resume must match every one of these (see openTrainingRun). */
export function setup2d(config: CheckpointConfig): Setting[] {
  const c = config as Partial<Toy2dCheckpointConfig>;
  const value = (x: unknown): Setting["value"] => (typeof x === "string" || typeof x === "number" ? x : null);
  return [
    { flag: "--dataset", value: value(c.dataset) },
    { flag: "--path", value: value(c.path) },
    { flag: "--hidden", value: value(c.model?.hidden) },
    { flag: "--depth", value: value(c.model?.depth) },
    { flag: "--time-emb-dim", value: value(c.model?.timeEmbDim) },
    { flag: "--fourier-features", value: value(c.model?.fourierFeatures ?? 0) },
    // The scale only shapes the features' initial weights, so it matters only where there are features.
    { flag: "--fourier-scale", value: value(c.model?.fourierFeatures ? c.model.fourierScale : null) },
    // Minibatch OT changes the regression target (which noise goes to which point), not just how it is fitted.
    { flag: "--coupling", value: value(c.train?.coupling ?? "independent") },
    { flag: "--reg", value: value(c.train?.reg ?? null) },
    { flag: "--bridge-sigma", value: value(c.train?.bridgeSigma ?? 0) },
    ...reflowSetup(config),
  ];
}
