// A small convolutional image classifier, the feature extractor of eval-image's quality score
// (class accuracy of samples, Fréchet distance of features). Checkpoint kind "classifier".
//
// Layout (L = channels.length): stem 3x3 conv inChannels -> c0; level i: 3x3 conv with stride 2
// c_{i-1} -> c_i, GroupNorm, SiLU; features = SiLU(dense(flattened last level)) (featureDim values;
// a global average pool instead measured no better than chance after 80 MNIST steps); head: dense
// features -> numClasses logits. NHWC in; [H, B, W, C] inside like the UNet (see layers.ts).
//
// Training reuses the flow-matching step unchanged (both backends, checkpoints, resume, EMA): with
// path coefficients alpha = 1, sigma = dAlpha = dSigma = 0 the step feeds x_t = the image and
// regresses onto the target 0, so the network's training output sqrt(CE + 1e-6) per image makes the
// step's mean square the mean cross-entropy (plus 1e-6, which keeps the square root's gradient finite).
import { nn, np, type Array } from "../../engine/index.js";
import { UserError } from "../errors.js";
import type { Rng } from "../rng.js";
import type { HostParams, Params } from "../optim.js";
import { configReader, invalidFields, paramCountOf, type ModelFamily, type VelocityModel } from "./family.js";
import { conv2d, dense, groupNorm, heNormal, silu } from "./layers.js";

export interface ClassifierConfig {
  /** Widths per level; each level halves the resolution. */
  channels: number[];
  groups: number;
  /** Size of the feature vector (the layer before the logits) that eval-image compares. */
  featureDim: number;
  numClasses: number;
  inChannels: number;
  height: number;
  width: number;
}

export const DEFAULT_CLASSIFIER: Omit<ClassifierConfig, "numClasses" | "inChannels" | "height" | "width"> = {
  channels: [32, 64],
  groups: 8,
  featureDim: 64,
};

/** Side of the last level: each level halves it (sizes must be divisible by 2^levels). */
function finalSide(side: number, levels: number): number {
  return side / 2 ** levels;
}

export function checkClassifierConfig(cfg: ClassifierConfig): void {
  if (cfg.channels.length < 1) throw new UserError("the classifier needs at least one level; pass e.g. --channels 32,64");
  for (const c of cfg.channels) {
    if (!Number.isInteger(c) || c < 1 || c % cfg.groups !== 0)
      throw new UserError(
        `classifier width ${c} is not a positive multiple of groups=${cfg.groups}; pick widths divisible by the group count`,
      );
  }
  if (!Number.isInteger(cfg.featureDim) || cfg.featureDim < 2)
    throw new UserError(`the classifier's feature size must be a whole number >= 2, got ${cfg.featureDim}`);
  const div = 2 ** cfg.channels.length;
  if (cfg.height % div !== 0 || cfg.width % div !== 0) {
    throw new UserError(
      `image size ${cfg.height}x${cfg.width} must be divisible by ${div} for ${cfg.channels.length} classifier levels; use fewer --channels levels (28x28: two)`,
    );
  }
  if (cfg.numClasses < 2) throw new UserError(`a classifier needs at least 2 classes, the data has ${cfg.numClasses}`);
}

export function classifierParamShapes(cfg: ClassifierConfig): Record<string, number[]> {
  checkClassifierConfig(cfg);
  const s: Record<string, number[]> = {};
  const ch = cfg.channels;
  s["stem.weight"] = [9 * cfg.inChannels, ch[0]];
  s["stem.bias"] = [ch[0]];
  ch.forEach((c, i) => {
    const cin = i === 0 ? ch[0] : ch[i - 1];
    s[`level.${i}.conv.weight`] = [9 * cin, c];
    s[`level.${i}.conv.bias`] = [c];
    s[`level.${i}.norm.weight`] = [c];
    s[`level.${i}.norm.bias`] = [c];
  });
  s["feature.weight"] = [finalSide(cfg.height, ch.length) * finalSide(cfg.width, ch.length) * ch[ch.length - 1], cfg.featureDim];
  s["feature.bias"] = [cfg.featureDim];
  s["head.weight"] = [cfg.featureDim, cfg.numClasses];
  s["head.bias"] = [cfg.numClasses];
  return s;
}

export function initClassifierParams(cfg: ClassifierConfig, rng: Rng): HostParams {
  const out: HostParams = {};
  for (const [name, shape] of Object.entries(classifierParamShapes(cfg))) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = name.endsWith("norm.weight")
      ? new Float32Array(n).fill(1)
      : name.endsWith(".bias")
        ? new Float32Array(n)
        : heNormal(rng, n, shape[0], name === "head.weight" ? 1 : Math.SQRT2);
    out[name] = { shape, data };
  }
  return out;
}

/** Features [B, featureDim] and logits [B, numClasses] of images x [B, H, W, C]; consumes x and params. */
export function classifierApply(params: Params, x: Array, cfg: ClassifierConfig): { features: Array; logits: Array } {
  let h = conv2d(params, "stem", x.transpose([1, 0, 2, 3]));
  cfg.channels.forEach((_, i) => {
    h = silu(groupNorm(params, `level.${i}.norm`, conv2d(params, `level.${i}.conv`, h, { stride: 2 }), cfg.groups));
  });
  const [hh, b, ww, c] = h.shape;
  const features = silu(dense(params, "feature", h.transpose([1, 0, 2, 3]).reshape([b, hh * ww * c])));
  const logits = dense(params, "head", features.ref);
  for (const p of Object.values(params)) p.dispose();
  return { features, logits };
}

/** Per-image sqrt(cross-entropy + 1e-6) as [B, 1, 1, 1]: the training output (see the header). */
function trainingOutput(params: Params, x: Array, t: Array, labels: Array | null, cfg: ClassifierConfig): Array {
  t.dispose();
  if (!labels) throw new Error("classifier training needs labels");
  const { features, logits } = classifierApply(params, x, cfg);
  features.dispose();
  const ce = np.sum(nn.logSoftmax(logits, -1).mul(nn.oneHot(labels, cfg.numClasses).astype(np.float32)), -1).neg();
  return np.sqrt(ce.add(1e-6)).reshape([-1, 1, 1, 1]);
}

export function parseClassifierConfig(raw: unknown, source: string): ClassifierConfig {
  const r = configReader(raw);
  const cfg: ClassifierConfig = {
    channels: r.ints("channels"),
    groups: r.int("groups", 1),
    featureDim: r.int("featureDim", 2),
    numClasses: r.int("numClasses", 2),
    inChannels: r.int("inChannels", 1),
    height: r.int("height", 1),
    width: r.int("width", 1),
  };
  const bad = invalidFields(cfg);
  if (bad.length > 0)
    throw new UserError(
      `${source}: checkpoint config has no valid classifier "model" section (${bad.join(", ")} missing or invalid); re-run train-classifier`,
    );
  try {
    checkClassifierConfig(cfg);
  } catch (err) {
    throw new UserError(`${source} has an invalid classifier config: ${err instanceof Error ? err.message : String(err)}`);
  }
  return cfg;
}

/** The image classifier, saved as checkpoint kind "classifier". Its `model` is the training output (see the header). */
export const classifierFamily: ModelFamily<ClassifierConfig> = {
  kind: "classifier",
  name: "classifier",
  defaults: DEFAULT_CLASSIFIER,
  parseConfig: parseClassifierConfig,
  paramShapes: classifierParamShapes,
  paramCount: (cfg) => paramCountOf(classifierParamShapes(cfg)),
  init: initClassifierParams,
  model: (cfg): VelocityModel => ({ apply: (params, x, t, labels) => trainingOutput(params, x, t, labels, cfg) }),
  sampleShape: (cfg) => [cfg.height, cfg.width, cfg.inChannels],
  nullLabel: () => null,
  describe: (cfg) => `classifier [${cfg.channels.join(", ")}] · ${cfg.numClasses} classes · ${cfg.height}×${cfg.width}×${cfg.inChannels}`,
  shapeFlags: {
    layers: "the number of --channels",
    sizes: "--channels, --feature-dim, the image size or colour channels, or the number of classes",
  },
  mismatchHint: 'The checkpoint\'s classifier config (ckpt.json "model") does not match its weights; re-run train-classifier.',
};
