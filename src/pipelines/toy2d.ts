// The 2-D conditional flow-matching pipeline: train an MLP velocity field on a toy dataset,
// checkpoint it, sample it with any solver, and draw what it learned.
import { join } from "node:path";
import { initEngine } from "../engine/index.js";
import { Rng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import { DEFAULT_ADAM, type HostParams } from "../core/optim.js";
import type { TrainerOptions } from "../core/train.js";
import { getScheduler, pathCoefficients, type PathName } from "../core/schedulers.js";
import { getTimeSampler, type TimeSamplerName } from "../core/timeSamplers.js";
import { otCouple, type CouplingName } from "../core/coupling.js";
import { sinkhornCouple } from "../core/sinkhorn.js";
import { bridgeBatch, checkBridgeSigma } from "../core/bridges.js";
import { initMlp, mlpModel, mlpParamShapes, type MlpConfig } from "../core/models/mlp.js";
import { modelField } from "../core/field.js";
import { assertEngineFits, mlpForwardBytes, mlpParamCount, mlpTrainBytes } from "../core/memory.js";
import { odeint, type SolverName } from "../core/solvers.js";
import { qualityReport, formatQuality, type QualityReport } from "../core/metrics.js";
import { parseToyDataset, sampleToy, toyBounds, toyDensity, type ToyDatasetName } from "../data/toy2d.js";
import "../data/pictureFiles.js"; // image:PATH.png datasets read files (Node only)
import { loadCheckpoint, checkParams, type CheckpointConfig, type Setting } from "../io/checkpoint.js";
import { writeFileAtomic } from "../io/atomic.js";
import { encodeGif, linePlot, scatterPlot, vectorFieldFrame, vectorFieldGrid } from "../viz/index.js";
import { stateToTensors, tensorsToState } from "./state.js";
import { runTrainingLoop, type TrainProgress } from "./loop.js";
import { openTrainingRun, reflowSetup } from "./run.js";
import { assertTrainingFits, createTrainer, DEFAULT_TRAIN_BACKEND, type TrainBackend } from "./trainers.js";

export interface Toy2dTrainConfig {
  dataset: ToyDatasetName;
  steps: number;
  batchSize: number;
  lr: number;
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
}

/** Deterministic per-step randomness: a resumed run draws exactly the batches the original would. */
export function stepRng(seed: number, step: number): Rng {
  return new Rng((Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca77)) >>> 0);
}

/** Refuses, before any allocation, a model and batch whose training step cannot fit in the engine. */
export function checkTrain2dMemory(model: MlpConfig, batchSize: number, backend: TrainBackend = DEFAULT_TRAIN_BACKEND): void {
  assertTrainingFits(
    backend,
    mlpTrainBytes(model, batchSize),
    `training an MLP of ${mlpParamCount(model).toLocaleString("en-US")} parameters (hidden ${model.hidden}, depth ${model.depth}) on batches of ${batchSize}`,
    "use a smaller --hidden, --depth or --batch-size",
  );
}

/** Refuses, before any allocation, a sample set too large for one forward pass in the engine. */
export function checkSample2dMemory(model: MlpConfig, n: number): void {
  assertEngineFits(mlpForwardBytes(model, n), `sampling ${n} points at once with an MLP of width ${model.hidden}`, "use a smaller --n");
}

export async function trainToy2d(opts: Toy2dTrainOptions): Promise<Toy2dTrainResult> {
  if (!Number.isInteger(opts.steps) || opts.steps < 1) throw new UserError(`--steps must be a positive integer, got ${opts.steps}`);
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new UserError(`--batch-size must be a positive integer, got ${opts.batchSize}`);
  if (!(opts.lr > 0)) throw new UserError(`--lr must be positive, got ${opts.lr}`);
  const bridgeSigma = checkBridgeSigma(opts.bridgeSigma ?? 0);
  if (bridgeSigma > 0 && opts.path !== "straight") throw new UserError(`--bridge-sigma adds Brownian-bridge noise to the straight path; use --path straight (got ${opts.path})`);
  if (opts.coupling === "sinkhorn" && !(opts.reg !== undefined && opts.reg > 0)) throw new UserError("--coupling sinkhorn needs --reg EPS, a positive entropic regularisation (e.g. 0.1)");
  if (opts.coupling !== "sinkhorn" && opts.reg !== undefined) throw new UserError(`--reg applies to --coupling sinkhorn only (got --coupling ${opts.coupling})`);
  checkTrain2dMemory(opts.model, opts.batchSize, opts.backend);
  await initEngine();
  const log = opts.onLog ?? (() => {});
  const model = mlpModel(opts.model);
  const scheduler = getScheduler(opts.path);
  const sampleTimes = getTimeSampler(opts.timeSampler);
  const adam = { ...DEFAULT_ADAM, lr: opts.lr };

  const configAt = (step: number, runId: string): Toy2dCheckpointConfig => ({
    format: "flowmatch-checkpoint",
    version: 1,
    kind: "2d",
    runId,
    step,
    dataset: opts.dataset,
    model: opts.model,
    path: opts.path,
    train: pick(opts),
  });
  const run = await openTrainingRun({
    out: opts.out,
    resume: opts.resume,
    force: opts.force,
    log,
    kind: "2d",
    command: "train2d",
    next: configAt(0, ""),
    identity: setup2d,
    shapes: mlpParamShapes(opts.model),
  });
  const losses = run.losses;
  const skipped = run.skipped;
  const trainer = await createTrainer(opts.backend ?? DEFAULT_TRAIN_BACKEND, {
    model,
    params: run.resume?.params ?? initMlp(opts.model, new Rng(opts.seed)),
    sampleShape: [opts.model.dim],
    adam,
    emaDecay: opts.emaDecay,
    resume: run.resume,
  });
  const save = async () => run.save(configAt(trainer.stepCount, run.runId), stateToTensors({ ...(await trainer.hostState()), losses, skipped }));

  let stopped = false;
  try {
    const n = opts.batchSize;
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
    }));
  } finally {
    trainer.dispose();
  }
  return { checkpointDir: opts.out, startStep: run.startStep, step: trainer.stepCount, losses, stopped };
}

function pick(o: Toy2dTrainConfig): Toy2dTrainConfig {
  const { dataset, steps, batchSize, lr, seed, path, timeSampler, emaDecay, model, coupling, reg, bridgeSigma } = o;
  return { dataset, steps, batchSize, lr, seed, path, timeSampler, emaDecay, model, coupling, ...(reg === undefined ? {} : { reg }), ...(bridgeSigma ? { bridgeSigma } : {}) };
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
    // Minibatch OT changes the regression target (which noise goes to which point), not just how it is fitted.
    { flag: "--coupling", value: value(c.train?.coupling ?? "independent") },
    { flag: "--reg", value: value(c.train?.reg ?? null) },
    { flag: "--bridge-sigma", value: value(c.train?.bridgeSigma ?? 0) },
    ...reflowSetup(config),
  ];
}

export interface Loaded2d {
  config: Toy2dCheckpointConfig;
  params: HostParams;
  ema: HostParams;
}

export async function loadToy2d(path: string): Promise<Loaded2d> {
  const { config, tensors } = await loadCheckpoint(path, { kind: "2d" });
  const cfg = config as Toy2dCheckpointConfig;
  if (!cfg.model || typeof cfg.model.hidden !== "number") throw new UserError(`${path}: checkpoint config has no valid "model" section`);
  parseToyDataset(cfg.dataset);
  checkParams(mlpParamShapes(cfg.model), tensors, path);
  const state = tensorsToState(tensors, path);
  return { config: cfg, params: state.params, ema: state.ema };
}

export interface SampleOptions {
  n: number;
  solver: SolverName;
  nfe: number;
  seed: number;
  weights: "ema" | "raw";
  /** Record states at these times (for GIFs); they never change the samples or the evaluations made. */
  saveAt?: number[];
}

/** Integrate noise to data with a trained 2-D model. */
export async function sampleToy2d(loaded: Loaded2d, opts: SampleOptions) {
  await initEngine();
  if (!Number.isInteger(opts.n) || opts.n < 1) throw new UserError(`--n must be a positive integer, got ${opts.n}`);
  checkSample2dMemory(loaded.config.model, opts.n);
  const f = modelField(mlpModel(loaded.config.model), opts.weights === "ema" ? loaded.ema : loaded.params, {
    sampleShape: [loaded.config.model.dim],
  });
  try {
    const x0 = new Rng(opts.seed).normals(opts.n * loaded.config.model.dim);
    const result = await odeint(f.field, x0, { solver: opts.solver, nfe: opts.nfe, saveAt: opts.saveAt });
    return { x0, ...result };
  } finally {
    f.dispose();
  }
}

/** The full metric set (metrics.ts qualityReport) of generated 2-D samples against fresh data of the same size. */
export async function evaluateToy2d(dataset: ToyDatasetName, generated: Float32Array): Promise<QualityReport> {
  return qualityReport(generated, (n, seed) => sampleToy(dataset, n, new Rng(seed)), 2, generated.length / 2, { density: toyDensity(dataset) });
}

const FLOORS_NOTE = "each *Floor is the same figure for fresh data of n points: what a perfect model would score";

export interface RenderOptions {
  out: string;
  solver: SolverName;
  nfe: number;
  n: number;
  seed: number;
  frames: number;
  losses?: number[];
}

/**
 * samples.png, vector_field.gif, loss.png and metrics.json for a trained 2-D model. The GIF's
 * particles are read off the measured solve's own steps (interpolated between them; see odeint's
 * saveAt), so frames cost no evaluations and never change the samples; `nfe` is the count made.
 */
export async function renderToy2d(loaded: Loaded2d, opts: RenderOptions): Promise<{ files: string[]; quality: QualityReport; summary: string; nfe: number }> {
  const { dataset } = loaded.config;
  const bounds = toyBounds(dataset);
  const frameTimes = Array.from({ length: opts.frames }, (_, i) => i / (opts.frames - 1));
  const sample = await sampleToy2d(loaded, { n: opts.n, solver: opts.solver, nfe: opts.nfe, seed: opts.seed, weights: "ema", saveAt: frameTimes });
  const real = sampleToy(dataset, opts.n, new Rng(opts.seed + 1));
  const quality = await evaluateToy2d(dataset, sample.x);
  const files: string[] = [];
  const write = async (name: string, data: Uint8Array | string) => {
    const path = join(opts.out, name);
    await writeFileAtomic(path, data);
    files.push(path);
  };

  const scatter = scatterPlot(
    [
      { title: `${dataset} data`, points: real },
      { title: `generated ${opts.solver} NFE ${sample.nfe}`, points: sample.x },
    ],
    { bounds },
  );
  await write("samples.png", scatter.toPng());

  // The learned field on a grid, one frame per saved time, with the particles that ride it.
  const gridN = 21;
  const grid = vectorFieldGrid(bounds, gridN);
  const f = modelField(mlpModel(loaded.config.model), loaded.ema, { sampleShape: [2] });
  const frames = [];
  try {
    const trajectory = sample.trajectory;
    if (!trajectory) throw new Error("solver returned no trajectory");
    for (let i = 0; i < trajectory.t.length; i++) {
      const t = trajectory.t[i];
      const field = await f.field(grid, t);
      frames.push(vectorFieldFrame({ bounds, gridN, field, particles: trajectory.xs[i].subarray(0, Math.min(opts.n, 1500) * 2), t, title: `${dataset} CFM` }));
    }
  } finally {
    f.dispose();
  }
  // Hold the first and last frames so the eye can settle on noise and on data.
  const held = [...Array(5).fill(frames[0]), ...frames, ...Array(10).fill(frames[frames.length - 1])];
  await write("vector_field.gif", encodeGif(held, { delayMs: 80, loop: true }));

  if (opts.losses && opts.losses.length > 0) {
    await write("loss.png", linePlot([{ name: "CFM loss", values: opts.losses }], { title: `${dataset} training loss` }).toPng());
  }
  const summary = formatQuality(quality);
  await write(
    "metrics.json",
    JSON.stringify({ dataset, solver: opts.solver, nfe: sample.nfe, steps: sample.steps, n: opts.n, step: loaded.config.step, ...quality, floors: FLOORS_NOTE }, null, 2) + "\n",
  );
  return { files, quality, summary, nfe: sample.nfe };
}
