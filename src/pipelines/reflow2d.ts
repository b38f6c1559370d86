// 2-Rectified Flow (Liu et al. 2023) for 2-D models: draw (noise, sample) pairs from a trained
// teacher with an accurate solver, then fit a new velocity field on the straight lines between
// each pair. The pairs' coupling is deterministic, so the new field's paths are straighter and
// few-step sampling gets much better.
import { join } from "node:path";
import { initEngine } from "../engine/index.js";
import { Rng, stepRng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import { pathCoefficients, straightScheduler } from "../core/paths.js";
import { getTimeSampler, type TimeSampler, type TimeSamplerName } from "../core/timeSamplers.js";
import { mlpFamily, mlpModel, type MlpConfig } from "../core/models/mlp.js";
import { modelField } from "../core/field.js";
import { odeint, type SolverName } from "../core/solvers.js";
import { cachedPairs, f32 } from "./pairsCache.js";
import { checkTrain2dMemory, setup2d, type Toy2dCheckpointConfig } from "./toy2d.js";
import type { Loaded2d } from "./model.js";
import type { TrainProgress } from "./loop.js";
import { checkRunFolder, openTrainingRun, reflowRound, type RunResult } from "./run.js";
import { DEFAULT_TRAIN_BACKEND, type TrainBackend } from "./trainers.js";

export interface ReflowPairs {
  x0: Float32Array;
  x1: Float32Array;
  /** Teacher evaluations made to draw them (counted by odeint; 0 when read from the cache). */
  nfe?: number;
}

/** Integrate the teacher from fresh noise: the (x0, x1) pairs define 2-rectified flow's coupling. */
export async function generatePairs(
  teacher: Loaded2d,
  opts: { n: number; seed: number; solver: SolverName; nfe: number; batch?: number; onProgress?: (done: number) => void },
): Promise<ReflowPairs> {
  await initEngine();
  const dim = teacher.config.model.dim;
  const x0 = new Rng(opts.seed).normals(opts.n * dim);
  const x1 = new Float32Array(x0.length);
  const f = modelField(mlpModel(teacher.config.model), teacher.ema, { sampleShape: [dim] });
  const batch = opts.batch ?? 4096;
  let nfe = 0;
  try {
    for (let start = 0; start < opts.n; start += batch) {
      const end = Math.min(opts.n, start + batch);
      const r = await odeint(f.field, x0.slice(start * dim, end * dim), { solver: opts.solver, nfe: opts.nfe, rtol: 1e-5, atol: 1e-5 });
      x1.set(r.x, start * dim);
      nfe += r.nfe;
      opts.onProgress?.(end);
    }
  } finally {
    f.dispose();
  }
  return { x0, x1, nfe };
}

export interface Reflow2dOptions {
  teacher: Loaded2d;
  teacherPath: string;
  out: string;
  pairs: number;
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
  timeSampler: TimeSamplerName;
  emaDecay: number;
  /** Start from the teacher's weights (default) instead of a fresh network. */
  warmStart: boolean;
  pairSolver: SolverName;
  pairNfe: number;
  /**
   * Distillation instead of reflow: train only at the k times 0, 1/k, ..., (k-1)/k of a k-step
   * Euler sampler (k = 1: t = 0, regress x1 - x0 from x0 alone, as gnobitab's one-step distillation).
   * A field that fits x1 - x0 at those points of each pair's line carries x0 to x1 in k Euler steps.
   */
  distillSteps?: number;
  /** Continue the student checkpoint in out (which must exist). */
  resume?: boolean;
  /** Replace a student checkpoint already in out (otherwise refused). */
  force?: boolean;
  /** Checkpoint every this many steps (and at the end, or when stopped). Default: a quarter of the steps. */
  checkpointEvery?: number;
  /** What runs the training step (default ort, as train2d); checkpoints are the same either way. */
  backend?: TrainBackend;
  /** Polled between steps; true checkpoints and stops early. Ctrl-C always does. */
  shouldStop?: () => boolean;
  onLog?: (line: string) => void;
  onPairs?: (done: number, total: number) => void;
  onProgress?: (p: TrainProgress) => void;
}

/** Training times of k-step distillation: each drawn uniformly from the grid 0, 1/k, ..., (k-1)/k. */
export function distillTimes(k: number): TimeSampler {
  return (n, rng) => {
    const t = new Float32Array(n);
    for (let i = 0; i < n; i++) t[i] = rng.int(k) / k;
    return t;
  };
}

/** Trains (or continues) the student; the result's `model` is what was saved, `pairNfe` the teacher evaluations this call made. */
export async function reflow2d(
  opts: Reflow2dOptions,
): Promise<RunResult<Toy2dCheckpointConfig, MlpConfig> & { checkpointDir: string; pairNfe: number }> {
  const distill = opts.distillSteps;
  if (distill !== undefined && (!Number.isInteger(distill) || distill < 1))
    throw new UserError(`--student-nfe must be a positive integer, got ${distill}`);
  if (!Number.isInteger(opts.pairs) || opts.pairs < opts.batchSize) {
    throw new UserError(`--pairs must be an integer of at least --batch-size (${opts.batchSize}), got ${opts.pairs}`);
  }
  if (!Number.isInteger(opts.steps) || opts.steps < 1) throw new UserError(`--steps must be a positive integer, got ${opts.steps}`);
  const backend = opts.backend ?? DEFAULT_TRAIN_BACKEND;
  checkTrain2dMemory(opts.teacher.config.model, opts.batchSize, backend);
  const log = opts.onLog ?? (() => {});
  await initEngine();
  const { model: mlp, dataset } = opts.teacher.config;
  const dim = mlp.dim;

  // Settle --resume/--force before the teacher spends time on pairs.
  const configAt = (step: number, runId: string): Toy2dCheckpointConfig => ({
    format: "flowmatch-checkpoint",
    version: 1,
    kind: "2d",
    runId,
    step,
    dataset,
    model: mlp,
    path: "straight",
    train: {
      dataset,
      steps: opts.steps,
      batchSize: opts.batchSize,
      lr: opts.lr,
      seed: opts.seed,
      path: "straight",
      timeSampler: opts.timeSampler,
      emaDecay: opts.emaDecay,
      model: mlp,
      coupling: "independent",
    },
    reflow: {
      teacher: opts.teacherPath,
      teacherRun: opts.teacher.config.runId,
      teacherStep: opts.teacher.config.step,
      seed: opts.seed,
      pairs: opts.pairs,
      pairSolver: opts.pairSolver,
      pairNfe: opts.pairNfe,
      warmStart: opts.warmStart,
      round: reflowRound(opts.teacher.config) + 1,
      ...(distill === undefined ? {} : { distill }),
    },
  });
  const run = await openTrainingRun({
    out: opts.out,
    resume: opts.resume ?? false,
    force: opts.force,
    log,
    command: distill === undefined ? "reflow" : "distill",
    family: mlpFamily,
    model: mlp,
    configAt,
    identity: setup2d,
  });

  // Pairs are the expensive part; keep them so a second run (or a crash) does not redo them.
  let pairNfe = 0;
  const pairsPath = join(opts.out, "pairs.safetensors");
  const wantMeta = {
    teacherRun: String(opts.teacher.config.runId ?? ""),
    teacherStep: String(opts.teacher.config.step),
    n: String(opts.pairs),
    seed: String(opts.seed),
    solver: opts.pairSolver,
    nfe: String(opts.pairNfe),
  };
  const stored = await cachedPairs(
    pairsPath,
    wantMeta,
    { x0: [opts.pairs, dim], x1: [opts.pairs, dim] },
    async () => {
      const p = await generatePairs(opts.teacher, {
        n: opts.pairs,
        seed: opts.seed + 7919,
        solver: opts.pairSolver,
        nfe: opts.pairNfe,
        onProgress: (done) => opts.onPairs?.(done, opts.pairs),
      });
      pairNfe += p.nfe ?? 0;
      const shape = [opts.pairs, dim];
      return { x0: { dtype: "F32", shape, data: p.x0 }, x1: { dtype: "F32", shape, data: p.x1 } };
    },
    log,
  );
  const pairs: ReflowPairs = { x0: f32(stored, "x0", pairsPath), x1: f32(stored, "x1", pairsPath) };

  const sampleTimes = distill === undefined ? getTimeSampler(opts.timeSampler) : distillTimes(distill);
  const n = opts.batchSize;
  const x0 = new Float32Array(n * dim);
  const x1 = new Float32Array(n * dim);
  const result = await run.train({
    init: () => (opts.warmStart ? opts.teacher.ema : mlpFamily.init(mlp, new Rng(opts.seed))),
    backend,
    lr: opts.lr,
    emaDecay: opts.emaDecay,
    steps: opts.steps,
    // Periodic checkpoints, so a killed reflow continues with --resume.
    checkpointEvery: opts.checkpointEvery ?? Math.max(1, Math.floor(opts.steps / 4)),
    onProgress: opts.onProgress,
    shouldStop: opts.shouldStop,
    nextBatch: (done) => {
      const rng = stepRng(opts.seed, done);
      for (let i = 0; i < n; i++) {
        const k = rng.int(opts.pairs);
        x0.set(pairs.x0.subarray(k * dim, (k + 1) * dim), i * dim);
        x1.set(pairs.x1.subarray(k * dim, (k + 1) * dim), i * dim);
      }
      const t = sampleTimes(n, rng);
      // Reflow always trains on straight lines between its pairs: target x1 - x0.
      return { x0, x1, t, coef: pathCoefficients(straightScheduler, t) };
    },
  });
  return { ...result, checkpointDir: opts.out, pairNfe };
}

/** Where round r (1-based) of a k-round reflow keeps its checkpoint and pairs. */
export function roundDir(out: string, r: number): string {
  return join(out, `round${r}`);
}

/** One round of reflowRounds2d: where it lives, what this call spent on it, and its model as saved. */
export interface ReflowRoundResult {
  round: number;
  out: string;
  /** Teacher evaluations this call made for the round's pairs (0: reused from its pairs.safetensors). */
  pairNfe: number;
  /** Steps trained in this call (0: the round's checkpoint was already complete). */
  stepsTrained: number;
  model: Loaded2d;
}

/**
 * k-rectified flow (Liu et al. 2023): round 1 is reflow from `teacher`, round r > 1 reflow from round
 * r - 1's model (pairs drawn from it, warm start from it), each in `out/round<r>` with its own pairs
 * and checkpoint. With `resume`, a round whose checkpoint exists is continued (a finished one trains
 * no further and reuses its pairs), a missing one is trained fresh. Round r's seed is seed + r - 1, so
 * every round draws fresh noise. Stops after the round Ctrl-C (or shouldStop) interrupted.
 */
export async function reflowRounds2d(
  opts: Reflow2dOptions & { rounds: number; onRound?: (round: number, rounds: number) => void },
): Promise<{ rounds: ReflowRoundResult[]; stopped: boolean }> {
  if (!Number.isInteger(opts.rounds) || opts.rounds < 1) throw new UserError(`--rounds must be a positive integer, got ${opts.rounds}`);
  if (opts.resume && opts.force) throw new UserError("pass --resume to continue the rounds or --force to replace them, not both");
  const log = opts.onLog ?? (() => {});
  // Settle --resume/--force for every round before any pairs are drawn.
  const present = Array.from({ length: opts.rounds }, (_, i) =>
    checkRunFolder({ out: roundDir(opts.out, i + 1), resume: false, force: opts.force || opts.resume, log }),
  );
  if (opts.resume && !present[0])
    throw new UserError(`--resume: ${roundDir(opts.out, 1)} holds no checkpoint; run without --resume to start the rounds there`);
  const results: ReflowRoundResult[] = [];
  let teacher = opts.teacher;
  let teacherPath = opts.teacherPath;
  for (let r = 1; r <= opts.rounds; r++) {
    opts.onRound?.(r, opts.rounds);
    const out = roundDir(opts.out, r);
    const resume = Boolean(opts.resume && present[r - 1]);
    const res = await reflow2d({
      ...opts,
      teacher,
      teacherPath,
      out,
      seed: (opts.seed + r - 1) >>> 0,
      resume,
      force: opts.force && !resume,
    });
    results.push({ round: r, out, pairNfe: res.pairNfe, stepsTrained: res.step - res.startStep, model: res.model });
    log(`round ${r}/${opts.rounds}: ${out} at step ${res.step}${res.pairNfe === 0 ? " (pairs reused)" : ""}`);
    if (res.stopped) return { rounds: results, stopped: true };
    teacher = res.model;
    teacherPath = out;
  }
  return { rounds: results, stopped: false };
}
