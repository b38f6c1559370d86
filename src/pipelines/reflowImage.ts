// 2-Rectified Flow for class-conditional image models: the teacher (guided, accurate solver)
// turns fixed noise into images per class; the student is trained on the straight lines between
// each noise and its image, warm-started from the teacher.
import { join } from "node:path";
import { Rng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import { odeint, type SolverName } from "../core/solvers.js";
import { cachedPairs, f32 } from "./pairsCache.js";
import type { ImageDataset } from "../data/images.js";
import { trainImage, type ImageCheckpointConfig } from "./images.js";
import { imageField } from "./imageSampling.js";
import type { LoadedImage } from "./model.js";
import type { UnetConfig } from "../core/models/unet.js";
import type { TrainProgress } from "./loop.js";
import { checkRunFolder, reflowRound, reflowSetup, type RunResult } from "./run.js";
import type { TrainBackend } from "./trainers.js";
import { assertSameSetup, loadCheckpoint } from "../io/checkpoint.js";

export interface ImagePairs {
  x0: Float32Array;
  x1: Float32Array;
  labels: Int32Array;
}

export async function generateImagePairs(
  teacher: LoadedImage,
  opts: { n: number; seed: number; solver: SolverName; nfe: number; guidance: number; batch?: number; onProgress?: (done: number) => void },
): Promise<ImagePairs> {
  const cfg = teacher.config.model;
  const per = cfg.height * cfg.width * cfg.inChannels;
  const labels = Int32Array.from({ length: opts.n }, (_, i) => i % cfg.numClasses);
  const x0 = new Rng(opts.seed).normals(opts.n * per);
  const x1 = new Float32Array(x0.length);
  const batch = opts.batch ?? 64;
  for (let s = 0; s < opts.n; s += batch) {
    const e = Math.min(opts.n, s + batch);
    const f = await imageField(teacher, labels.subarray(s, e), opts.guidance, "onnx");
    try {
      const { x } = await odeint(f.field, x0.subarray(s * per, e * per), { solver: opts.solver, nfe: opts.nfe });
      x1.set(x, s * per);
    } finally {
      f.dispose();
    }
    opts.onProgress?.(e);
  }
  return { x0, x1, labels };
}

export interface ReflowImageOptions {
  teacher: LoadedImage;
  teacherPath: string;
  out: string;
  pairs: number;
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
  emaDecay: number;
  warmStart: boolean;
  pairSolver: SolverName;
  pairNfe: number;
  guidance: number;
  /** Continue the student checkpoint in out (which must exist). */
  resume?: boolean;
  /** Replace a student checkpoint already in out (otherwise refused). */
  force?: boolean;
  /** What runs the training step (default ort); checkpoints are the same either way. */
  backend?: TrainBackend;
  onLog?: (line: string) => void;
  onPairs?: (done: number, total: number) => void;
  onProgress?: (p: TrainProgress) => void;
}

/** Trains (or continues) the student; the result's `model` is what was saved. */
export async function reflowImage(opts: ReflowImageOptions): Promise<RunResult<ImageCheckpointConfig, UnetConfig>> {
  if (!Number.isInteger(opts.pairs) || opts.pairs < opts.batchSize)
    throw new UserError(`--pairs must be at least --batch-size (${opts.batchSize}), got ${opts.pairs}`);
  // Refuse a wrong --resume/--force before the teacher spends minutes on pairs.
  checkRunFolder({ out: opts.out, resume: opts.resume ?? false, force: opts.force, log: opts.onLog });
  const cfg = opts.teacher.config.model;
  const { numClasses: _n, inChannels: _c, height: _h, width: _w, ...architecture } = opts.teacher.model;
  const reflowRecord = {
    teacher: opts.teacherPath,
    teacherRun: opts.teacher.config.runId,
    teacherStep: opts.teacher.config.step,
    seed: opts.seed,
    pairs: opts.pairs,
    pairSolver: opts.pairSolver,
    pairNfe: opts.pairNfe,
    guidance: opts.guidance,
    warmStart: opts.warmStart,
    round: reflowRound(opts.teacher.config) + 1,
  };
  // Check a resume before the expensive pairs, with the same settings trainImage's run compares.
  if (opts.resume) {
    const { config } = await loadCheckpoint(opts.out, { kind: "image", command: "reflow --resume" });
    assertSameSetup(reflowSetup(config), reflowSetup({ ...config, reflow: reflowRecord }), opts.out);
  }
  const pairsPath = join(opts.out, "pairs.safetensors");
  const meta = {
    teacherRun: String(opts.teacher.config.runId),
    teacherStep: String(opts.teacher.config.step),
    n: String(opts.pairs),
    seed: String(opts.seed),
    solver: opts.pairSolver,
    nfe: String(opts.pairNfe),
    guidance: String(opts.guidance),
  };
  const shape = [opts.pairs, cfg.height, cfg.width, cfg.inChannels];
  const stored = await cachedPairs(
    pairsPath,
    meta,
    { x0: shape, x1: shape, labels: [opts.pairs] },
    async () => {
      const p = await generateImagePairs(opts.teacher, {
        n: opts.pairs,
        seed: opts.seed + 7919,
        solver: opts.pairSolver,
        nfe: opts.pairNfe,
        guidance: opts.guidance,
        onProgress: (d) => opts.onPairs?.(d, opts.pairs),
      });
      return {
        x0: { dtype: "F32", shape, data: p.x0 },
        x1: { dtype: "F32", shape, data: p.x1 },
        labels: { dtype: "I32", shape: [opts.pairs], data: p.labels },
      };
    },
    opts.onLog,
  );
  const labels = stored.labels.data;
  if (!(labels instanceof Int32Array))
    throw new UserError(`${pairsPath}: tensor "labels" must be I32; delete ${pairsPath} and run again to regenerate the pairs`);
  const pairs: ImagePairs = { x0: f32(stored, "x0", pairsPath), x1: f32(stored, "x1", pairsPath), labels };
  const data: ImageDataset = {
    name: `reflow of ${opts.teacher.config.dataset}`,
    images: pairs.x1,
    labels: pairs.labels,
    n: opts.pairs,
    height: cfg.height,
    width: cfg.width,
    channels: cfg.inChannels,
    numClasses: cfg.numClasses,
    classNames: opts.teacher.config.classNames,
  };
  const result = await trainImage({
    dataset: opts.teacher.config.dataset,
    data,
    coupledNoise: pairs.x0,
    initParams: opts.warmStart ? opts.teacher.ema : undefined,
    steps: opts.steps,
    batchSize: opts.batchSize,
    lr: opts.lr,
    seed: opts.seed,
    path: "straight",
    timeSampler: "uniform",
    emaDecay: opts.emaDecay,
    labelDropout: opts.teacher.config.train.labelDropout,
    limit: 0,
    // The teacher's architecture (everything but what the data gives), so its weights fit.
    model: architecture,
    out: opts.out,
    checkpointEvery: Math.max(1, Math.floor(opts.steps / 4)),
    resume: opts.resume ?? false,
    force: opts.force,
    command: "reflow",
    backend: opts.backend,
    onLog: opts.onLog,
    onProgress: opts.onProgress,
    extraConfig: { reflow: reflowRecord },
  });
  return result;
}
