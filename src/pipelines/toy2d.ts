// The 2-D conditional flow-matching pipeline: train an MLP velocity field on a toy dataset,
// checkpoint it, sample it with any solver, and draw what it learned.
import { join } from "node:path";
import { existsSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { initEngine } from "../engine/index.js";
import { Rng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import { DEFAULT_ADAM, type HostParams } from "../core/optim.js";
import { FlowTrainer } from "../core/train.js";
import { getScheduler, pathCoefficients, type PathName } from "../core/schedulers.js";
import { getTimeSampler, type TimeSamplerName } from "../core/timeSamplers.js";
import { otCouple, type CouplingName } from "../core/coupling.js";
import { initMlp, mlpModel, mlpParamShapes, type MlpConfig } from "../core/models/mlp.js";
import { modelField } from "../core/field.js";
import { odeint, type SolverName } from "../core/solvers.js";
import { qualityReport, formatQuality, type QualityReport } from "../core/metrics.js";
import { parseToyDataset, sampleToy, toyBounds, type ToyDatasetName } from "../data/toy2d.js";
import { saveCheckpoint, loadCheckpoint, checkParams, type CheckpointConfig } from "../io/checkpoint.js";
import { writeFileAtomic } from "../io/atomic.js";
import { encodeGif, linePlot, scatterPlot, vectorFieldFrame, vectorFieldGrid } from "../viz/index.js";
import { stateToTensors, tensorsToState } from "./state.js";
import { runTrainingLoop, type TrainProgress } from "./loop.js";

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
  /** Continue from out/ckpt.* if present. */
  resume: boolean;
  onProgress?: (p: TrainProgress) => void;
  onLog?: (line: string) => void;
  /** Polled between steps; when it returns true the run checkpoints and stops early. */
  shouldStop?: () => boolean;
}

export interface Toy2dTrainResult {
  checkpointDir: string;
  step: number;
  losses: number[];
  stopped: boolean;
}

/** Deterministic per-step randomness: a resumed run draws exactly the batches the original would. */
export function stepRng(seed: number, step: number): Rng {
  return new Rng((Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca77)) >>> 0);
}

export async function trainToy2d(opts: Toy2dTrainOptions): Promise<Toy2dTrainResult> {
  if (!Number.isInteger(opts.steps) || opts.steps < 1) throw new UserError(`--steps must be a positive integer, got ${opts.steps}`);
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new UserError(`--batch-size must be a positive integer, got ${opts.batchSize}`);
  if (!(opts.lr > 0)) throw new UserError(`--lr must be positive, got ${opts.lr}`);
  await initEngine();
  const log = opts.onLog ?? (() => {});
  const model = mlpModel(opts.model);
  const scheduler = getScheduler(opts.path);
  const sampleTimes = getTimeSampler(opts.timeSampler);
  const adam = { ...DEFAULT_ADAM, lr: opts.lr };

  let initial: HostParams = initMlp(opts.model, new Rng(opts.seed));
  let resume: ConstructorParameters<typeof FlowTrainer>[0]["resume"];
  let losses: number[] = [];
  let skipped: number[] = [];
  let runId: string = randomUUID();
  const ckptJson = join(opts.out, "ckpt.json");
  if (opts.resume && existsSync(ckptJson)) {
    const { config, tensors } = await loadCheckpoint(opts.out, { kind: "2d" });
    const prev = config as Toy2dCheckpointConfig;
    assertSameSetup(prev, opts);
    checkParams(mlpParamShapes(opts.model), tensors, ckptJson);
    const state = tensorsToState(tensors, ckptJson);
    if (!state.m || !state.v) throw new UserError(`${ckptJson} has no optimizer state, so it cannot be resumed; train without --resume`);
    initial = state.params;
    skipped = state.skipped ?? [];
    resume = { ema: state.ema, m: state.m, v: state.v, step: prev.step, skipped: skipped.length };
    losses = state.losses ?? [];
    runId = typeof prev.runId === "string" ? prev.runId : runId;
    log(`resuming from step ${prev.step} (${ckptJson})`);
  }

  const trainer = new FlowTrainer({ model, params: initial, sampleShape: [opts.model.dim], adam, emaDecay: opts.emaDecay, resume });
  const save = async () => {
    const state = await trainer.hostState();
    const config: Toy2dCheckpointConfig = {
      format: "flowmatch-checkpoint",
      version: 1,
      kind: "2d",
      runId,
      step: trainer.stepCount,
      dataset: opts.dataset,
      model: opts.model,
      path: opts.path,
      train: pick(opts),
    };
    await saveCheckpoint(opts.out, { config, tensors: stateToTensors({ ...state, losses, skipped }) });
  };

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
        const x0 = rng.normals(n * opts.model.dim);
        let x1 = sampleToy(opts.dataset, n, rng);
        if (opts.coupling === "ot") x1 = otCouple(x0, x1, opts.model.dim).x1;
        return { x0, x1, t, coef: pathCoefficients(scheduler, t) };
      },
    }));
  } finally {
    trainer.dispose();
  }
  return { checkpointDir: opts.out, step: trainer.stepCount, losses, stopped };
}

function pick(o: Toy2dTrainConfig): Toy2dTrainConfig {
  const { dataset, steps, batchSize, lr, seed, path, timeSampler, emaDecay, model, coupling } = o;
  return { dataset, steps, batchSize, lr, seed, path, timeSampler, emaDecay, model, coupling };
}

/** A resumed run must train the same model on the same data and path, or the checkpoint is not its past. */
function assertSameSetup(prev: Toy2dCheckpointConfig, next: Toy2dTrainConfig): void {
  const diffs: string[] = [];
  if (prev.dataset !== next.dataset) diffs.push(`--dataset ${prev.dataset} (you passed ${next.dataset})`);
  if (prev.path !== next.path) diffs.push(`--path ${prev.path} (you passed ${next.path})`);
  for (const key of ["hidden", "depth", "timeEmbDim", "dim"] as const) {
    if (prev.model[key] !== next.model[key]) diffs.push(`model ${key} ${prev.model[key]} (you passed ${next.model[key]})`);
  }
  if (diffs.length > 0) {
    throw new UserError(`cannot resume: the checkpoint was trained with ${diffs.join(", ")}; pass the same flags or a different --out`);
  }
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
  /** Record states at these times (for GIFs). */
  saveAt?: number[];
}

/** Integrate noise to data with a trained 2-D model. */
export async function sampleToy2d(loaded: Loaded2d, opts: SampleOptions) {
  await initEngine();
  if (!Number.isInteger(opts.n) || opts.n < 1) throw new UserError(`--n must be a positive integer, got ${opts.n}`);
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

export async function evaluateToy2d(dataset: ToyDatasetName, generated: Float32Array): Promise<QualityReport> {
  return qualityReport(generated, (n, seed) => sampleToy(dataset, n, new Rng(seed)), 2, generated.length / 2);
}

export interface RenderOptions {
  out: string;
  solver: SolverName;
  nfe: number;
  n: number;
  seed: number;
  frames: number;
  losses?: number[];
}

/** samples.png, vector_field.gif, loss.png and metrics.json for a trained 2-D model. */
export async function renderToy2d(loaded: Loaded2d, opts: RenderOptions): Promise<{ files: string[]; quality: QualityReport; summary: string }> {
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
      { title: `generated ${opts.solver} NFE ${opts.nfe}`, points: sample.x },
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
    JSON.stringify({ dataset, solver: opts.solver, nfe: opts.nfe, n: opts.n, step: loaded.config.step, ...quality }, null, 2) + "\n",
  );
  return { files, quality, summary };
}
