// train-classifier and eval-image: a small classifier trained with the project's own training run
// (core/models/classifier.ts explains how the flow-matching step trains it), and the quality score
// of an image model measured with it: class accuracy of samples for their requested labels, the
// Fréchet distance between classifier features of samples and of real test images, and the floor
// of that distance between two real sets of the same size.
import { join } from "node:path";
import { fromHost, initEngine, jit, toHost, tree, type Array } from "../engine/index.js";
import { Rng, stepRng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import type { Params } from "../core/optim.js";
import { toEngine } from "../core/train.js";
import { classAccuracy, frechetDistanceOf } from "../core/metrics.js";
import { classifierApply, classifierFamily, type ClassifierConfig } from "../core/models/classifier.js";
import { getTimeSampler } from "../core/timeSamplers.js";
import { loadImageDataset, recordedImageTransforms, type ImageDataset, type ImageTransforms } from "../data/images.js";
import type { CheckpointConfig, Setting } from "../io/checkpoint.js";
import type { TrainProgress } from "./loop.js";
import { checkRunFolder, openTrainingRun, type RunResult } from "./run.js";
import { imageBatches } from "./imageBatches.js";
import { sampleImages, type ImageSampleOptions } from "./imageSampling.js";
import type { LoadedImage, LoadedModel } from "./model.js";
import type { TrainBackend } from "./trainers.js";

export interface ClassifierCheckpointConfig extends CheckpointConfig {
  kind: "classifier";
  runId: string;
  dataset: string;
  classNames: string[];
  model: ClassifierConfig;
  train: ImageTransforms & {
    dataset: string;
    steps: number;
    batchSize: number;
    lr: number;
    seed: number;
    limit: number;
    horizontalFlip?: boolean;
    /** Trained to tell each image's rotation (0, 90, 180, 270 degrees), not its class (absent: classes). */
    rotations?: boolean;
  };
}
export type LoadedClassifier = LoadedModel<ClassifierCheckpointConfig, ClassifierConfig>;

/** Options of train-classifier; the folder:DIR transforms as train-image's --grey, --resize, --center-crop. */
export interface ClassifierTrainOptions extends ImageTransforms {
  dataset: string;
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
  limit: number;
  horizontalFlip?: boolean;
  /**
   * Learn features by telling each image's rotation by 0, 90, 180 or 270 degrees (4 classes) instead
   * of its class: features for eval-image on data with one class, where there is nothing to tell apart.
   */
  rotations?: boolean;
  model: Omit<ClassifierConfig, "numClasses" | "inChannels" | "height" | "width">;
  out: string;
  checkpointEvery: number;
  resume: boolean;
  force?: boolean;
  backend: TrainBackend;
  data?: ImageDataset;
  onProgress?: (p: TrainProgress) => void;
  onLog?: (line: string) => void;
  shouldStop?: () => boolean;
}

/** What a classifier checkpoint's weights are: a resume must match these. */
export function setupClassifier(config: CheckpointConfig): Setting[] {
  const c = config as Partial<ClassifierCheckpointConfig>;
  const m = c.model;
  return [
    { flag: "--dataset", value: typeof c.dataset === "string" ? c.dataset : null },
    { flag: "--rotations", value: c.train?.rotations === true },
    { flag: "--grey", value: c.train?.grey === true },
    { flag: "--resize", value: c.train?.resize ?? 0 },
    { flag: "--center-crop", value: c.train?.centerCrop ?? 0 },
    { flag: "--channels", value: Array.isArray(m?.channels) ? m.channels.join(",") : null },
    { flag: "--groups", value: typeof m?.groups === "number" ? m.groups : null },
    { flag: "--feature-dim", value: typeof m?.featureDim === "number" ? m.featureDim : null },
    { flag: "image size and classes of the data", value: m ? `${m.height}x${m.width}x${m.inChannels}, ${m.numClasses} classes` : null },
  ];
}

export async function trainClassifier(opts: ClassifierTrainOptions): Promise<RunResult<ClassifierCheckpointConfig, ClassifierConfig>> {
  const log = opts.onLog ?? (() => {});
  checkRunFolder({ out: opts.out, resume: opts.resume, force: opts.force, log });
  await initEngine();
  const data =
    opts.data ??
    (await loadImageDataset(opts.dataset, {
      split: "train",
      limit: opts.limit > 0 ? opts.limit : undefined,
      onWarn: log,
      ...recordedImageTransforms(opts),
    }));
  if (!opts.rotations && data.numClasses < 2)
    throw new UserError(
      `a classifier needs at least 2 classes, ${opts.dataset} has ${data.numClasses}; for data with one class, pass --rotations (features from telling rotations apart)`,
    );
  if (opts.rotations && data.height !== data.width)
    throw new UserError(
      `--rotations needs square images (a quarter turn must keep the size), ${opts.dataset} has ${data.height}x${data.width}; add --resize N`,
    );
  const cfg: ClassifierConfig = {
    ...opts.model,
    numClasses: opts.rotations ? ROTATION_CLASSES.length : data.numClasses,
    inChannels: data.channels,
    height: data.height,
    width: data.width,
  };
  classifierFamily.parseConfig(cfg, "--channels/--groups");
  const train = {
    dataset: opts.dataset,
    steps: opts.steps,
    batchSize: opts.batchSize,
    lr: opts.lr,
    seed: opts.seed,
    limit: opts.limit,
    ...(opts.horizontalFlip ? { horizontalFlip: true } : {}),
    ...(opts.rotations ? { rotations: true } : {}),
    // Recorded only when used (eval-image reloads the real images with them).
    ...(opts.grey ? { grey: true } : {}),
    ...(opts.resize ? { resize: opts.resize } : {}),
    ...(opts.centerCrop ? { centerCrop: opts.centerCrop } : {}),
  };
  const run = await openTrainingRun({
    out: opts.out,
    resume: opts.resume,
    force: opts.force,
    log,
    command: "train-classifier",
    family: classifierFamily,
    model: cfg,
    configAt: (step, runId): ClassifierCheckpointConfig => ({
      format: "flowmatch-checkpoint",
      version: 1,
      kind: "classifier",
      runId,
      step,
      dataset: opts.dataset,
      classNames: opts.rotations ? ROTATION_CLASSES.slice() : data.classNames,
      model: cfg,
      train,
    }),
    identity: setupClassifier,
  });
  const batches = imageBatches(data, {
    batchSize: opts.batchSize,
    seed: opts.seed,
    labelDropout: 0,
    sampleTimes: getTimeSampler("uniform"),
    horizontalFlip: opts.horizontalFlip,
  });
  // alpha = 1, sigma = dAlpha = dSigma = 0: x_t is the image and the target 0 (see core/models/classifier.ts).
  const coef = new Float32Array(opts.batchSize * 4);
  for (let i = 0; i < opts.batchSize; i++) coef[4 * i] = 1;
  return run.train({
    init: () => classifierFamily.init(cfg, new Rng(opts.seed)),
    backend: opts.backend,
    // One batch shard per thread (BackendOptions): the default classifier's step at batch 64 on 2
    // cores, idle, 35-40 vs 45-54 ms as one session on two threads.
    backendOptions: { dataParallel: true },
    lr: opts.lr,
    // Evaluation uses the EMA weights; a short decay suits runs of a few thousand steps.
    emaDecay: 0.99,
    steps: opts.steps,
    checkpointEvery: opts.checkpointEvery,
    onProgress: opts.onProgress,
    shouldStop: opts.shouldStop,
    nextBatch: (k) => {
      const { x1, t, labels } = batches(k);
      if (opts.rotations) rotateBatch(x1, labels, data.height, data.channels, stepRng(opts.seed ^ 0x5eed, k));
      return { x0: new Float32Array(x1.length), x1, t, coef, labels };
    },
  });
}

/** The classes of a --rotations classifier: quarter turns clockwise. */
export const ROTATION_CLASSES: readonly string[] = ["0°", "90°", "180°", "270°"];

/**
 * Turns each square image of `x` ([n, s, s, c] flattened) by a random number r of quarter turns
 * clockwise, in place, and sets labels[i] = r.
 */
export function rotateBatch(x: Float32Array, labels: Int32Array, size: number, channels: number, rng: Rng): void {
  const per = size * size * channels;
  const tmp = new Float32Array(per);
  for (let i = 0; i < labels.length; i++) {
    const r = rng.int(4);
    labels[i] = r;
    const img = x.subarray(i * per, (i + 1) * per);
    tmp.set(img);
    for (let y = 0; y < size; y++)
      for (let xx = 0; xx < size; xx++) {
        // Source pixel (y, xx) lands at its position after r clockwise quarter turns.
        const [ty, tx] = r === 0 ? [y, xx] : r === 1 ? [xx, size - 1 - y] : r === 2 ? [size - 1 - y, size - 1 - xx] : [size - 1 - xx, y];
        for (let c = 0; c < channels; c++) img[(ty * size + tx) * channels + c] = tmp[(y * size + xx) * channels + c];
      }
  }
}

/** Features [n, d] and logits [n, k] of images ([n, H, W, C] in [-1, 1]) under a classifier's EMA weights. */
export async function classify(
  loaded: LoadedClassifier,
  images: Float32Array,
  batch = 64,
): Promise<{ features: Float32Array; logits: Float32Array; featureDim: number }> {
  await initEngine();
  const cfg = loaded.config.model;
  const per = cfg.height * cfg.width * cfg.inChannels;
  const n = images.length / per;
  const d = cfg.featureDim;
  const params = toEngine(loaded.ema);
  const fwd = jit((p: Params, x: Array) => {
    const { features, logits } = classifierApply(p, x, cfg);
    return [features, logits] as [Array, Array];
  });
  const features = new Float32Array(n * d);
  const logits = new Float32Array(n * cfg.numClasses);
  try {
    for (let s = 0; s < n; s += batch) {
      const e = Math.min(n, s + batch);
      // Pad the last batch to the jitted size; the extra rows are ignored.
      const x = new Float32Array(batch * per);
      x.set(images.subarray(s * per, e * per));
      const [f, l] = fwd(tree.ref(params), fromHost(x, [batch, cfg.height, cfg.width, cfg.inChannels]));
      features.set((await toHost(f)).subarray(0, (e - s) * d), s * d);
      logits.set((await toHost(l)).subarray(0, (e - s) * cfg.numClasses), s * cfg.numClasses);
    }
  } finally {
    tree.dispose(params);
    fwd.dispose();
  }
  return { features, logits, featureDim: d };
}

export interface EvalImageResult {
  n: number;
  accuracy: number;
  /** Fréchet distance of classifier features: samples vs real test images. */
  frechet: number;
  /** The same distance between two real sets of n images each: the best a model can expect. */
  floor: number;
  /** Where the real sets came from, for the report. */
  realSets: string;
  /** Classifier accuracy on the real test images (how much its features can be trusted). */
  realAccuracy: number;
  /** The classifier tells rotations: the accuracies are the fractions it sees as upright. */
  rotations: boolean;
  nfe: number;
}

/** Samples `perClass` images of every class and scores them with the classifier. */
export async function evalImage(
  model: LoadedImage,
  classifier: LoadedClassifier,
  opts: Omit<ImageSampleOptions, "classes">,
): Promise<EvalImageResult> {
  const m = model.config.model,
    c = classifier.config.model;
  const rotations = classifier.config.train.rotations === true;
  if (m.height !== c.height || m.width !== c.width || m.inChannels !== c.inChannels || (!rotations && m.numClasses !== c.numClasses)) {
    throw new UserError(
      `the classifier takes ${c.height}x${c.width}x${c.inChannels} images of ${c.numClasses} classes but the model makes ${m.height}x${m.width}x${m.inChannels} of ${m.numClasses}; train a classifier on the model's dataset (${model.config.dataset})`,
    );
  }
  const s = await sampleImages(model, opts);
  const n = s.labels.length;
  // Two real sets with the samples' class counts, alternate images of each class of the test split
  // (a folder has none: of its images). Both held out from the classifier's training: its features
  // of images it was trained on sit apart from those of unseen ones, so train vs test is no floor.
  // Matching the counts matters too: the first n images of a split are not balanced, samples are.
  const transforms = recordedImageTransforms(classifier.config.train);
  const counts = new Array<number>(Math.max(m.numClasses, c.numClasses)).fill(0);
  for (const l of s.labels) counts[l]++;
  // Enough to find every class's share twice in any split that is not grouped by class.
  const limit = 20 * n;
  const dataset = classifier.config.dataset;
  let real: ImageDataset, realSets: string;
  try {
    real = await loadImageDataset(dataset, { split: "test", limit, ...transforms });
    realSets = `alternate images of each class of the ${dataset} test split`;
  } catch (err) {
    if (!(err instanceof UserError) || !/no test split/.test(err.message)) throw err;
    real = await loadImageDataset(dataset, { split: "train", limit, ...transforms });
    realSets = `alternate images of each class of ${dataset}`;
  }
  const a = withClassCounts(real, counts, 0);
  const b = withClassCounts(real, counts, 1);
  if (a.n < 2 || b.n < 2) throw new UserError(`${dataset} has too few images for the real reference sets (need at least 2 each)`);
  const gen = await classify(classifier, s.images);
  const ra = await classify(classifier, a.images);
  const rb = await classify(classifier, b.images);
  const d = gen.featureDim;
  return {
    n,
    // A rotation classifier's "class" of an image as it is made is 0 (upright).
    accuracy: classAccuracy(gen.logits, rotations ? new Int32Array(n) : s.labels),
    frechet: frechetDistanceOf(gen.features, ra.features, d),
    floor: frechetDistanceOf(rb.features, ra.features, d),
    realSets: `${realSets}, ${a.n} and ${b.n} images`,
    realAccuracy: classAccuracy(ra.logits, rotations ? new Int32Array(a.n) : a.labels),
    rotations,
    nfe: s.nfe,
  };
}

/**
 * The first counts[k] images of each class k of `ds` (of every second image of the class, from
 * `parity`, when given), or as many as it has.
 */
export function withClassCounts(ds: ImageDataset, counts: number[], parity?: 0 | 1): ImageDataset {
  const per = ds.height * ds.width * ds.channels;
  const want = counts.slice();
  const seen = new Array<number>(counts.length).fill(0);
  const picked: number[] = [];
  for (let i = 0; i < ds.n; i++) {
    const l = ds.labels[i];
    if (l >= want.length) continue;
    const k = seen[l]++;
    if (parity !== undefined && k % 2 !== parity) continue;
    if (want[l] > 0) want[l]--, picked.push(i);
  }
  const images = new Float32Array(picked.length * per);
  picked.forEach((i, j) => images.set(ds.images.subarray(i * per, (i + 1) * per), j * per));
  return { ...ds, n: picked.length, images, labels: Int32Array.from(picked, (i) => ds.labels[i]) };
}

export function defaultClassifierOut(dataset: string): string {
  const name = dataset.includes(":") ? (dataset.split(/[\\/]/).filter(Boolean).pop() ?? "custom") : dataset;
  return join("outputs", "classifier", name);
}
