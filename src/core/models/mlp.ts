// The 2-D velocity network: an MLP on [x, embed(t)] with SiLU activations.
// Layer i has "layers.i.weight" [in, out] and "layers.i.bias" [out]; the last layer is linear.
import { np, type Array } from "../../engine/index.js";
import { UserError } from "../errors.js";
import { silu, timeEmbedding } from "./layers.js";
import type { Rng } from "../rng.js";
import type { HostParams, Params } from "../optim.js";
import { configReader, invalidFields, paramCountOf, type ModelFamily, type VelocityModel } from "./family.js";
// memory.ts imports this module too; the family only holds references to its functions, so either may load first.
import { mlpForwardBytes, mlpTrainBytes } from "../memory.js";

/** Shape of the MLP velocity network for low-dimensional data (the 2-D toy sets): x and the embedded t in, dx/dt out. */
export interface MlpConfig {
  /** Data dimension (2 for the toy sets). */
  dim: number;
  /** Width of each hidden layer. */
  hidden: number;
  /** Number of hidden layers. */
  depth: number;
  /** Sinusoidal time-embedding size; 0 feeds raw t as one extra input. */
  timeEmbDim: number;
  /**
   * Fourier features of x (Tancik et al. 2020): this many [sin(x B), cos(x B)] pairs join x at the
   * input, B = "fourier.weight" [dim, n] (trained with the rest). 0 or absent: none (older checkpoints).
   */
  fourierFeatures?: number;
  /** Init scale of B: its entries start as N(0, (2 pi fourierScale)^2), i.e. frequencies in cycles per unit of x. */
  fourierScale?: number;
}

/** The network train2d builds unless --hidden, --depth or --time-emb-dim say otherwise. */
export const DEFAULT_MLP: MlpConfig = { dim: 2, hidden: 256, depth: 3, timeEmbDim: 32, fourierFeatures: 32, fourierScale: 0.5 };

export function mlpLayerSizes(cfg: MlpConfig): number[] {
  const input = cfg.dim + 2 * fourierCount(cfg) + (cfg.timeEmbDim > 0 ? cfg.timeEmbDim : 1);
  return [input, ...Array.from({ length: cfg.depth }, () => cfg.hidden), cfg.dim];
}

export function mlpParamCount(cfg: MlpConfig): number {
  return paramCountOf(mlpParamShapes(cfg));
}

/**
 * Every parameter's name and shape for `cfg` ("layers.i.weight" [in, out], "layers.i.bias" [out]):
 * what initMlp fills and checkpoints hold.
 */
export function mlpParamShapes(cfg: MlpConfig): Record<string, number[]> {
  const sizes = mlpLayerSizes(cfg);
  const shapes: Record<string, number[]> = {};
  if (fourierCount(cfg) > 0) shapes["fourier.weight"] = [cfg.dim, fourierCount(cfg)];
  for (let i = 0; i + 1 < sizes.length; i++) {
    shapes[`layers.${i}.weight`] = [sizes[i], sizes[i + 1]];
    shapes[`layers.${i}.bias`] = [sizes[i + 1]];
  }
  return shapes;
}

/** Fresh MLP weights from the seeded Rng, as PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases. */
export function initMlp(cfg: MlpConfig, rng: Rng): HostParams {
  const out: HostParams = {};
  for (const [name, shape] of Object.entries(mlpParamShapes(cfg))) {
    if (name === "fourier.weight") {
      out[name] = { shape, data: rng.normals(shape[0] * shape[1]).map((z) => z * 2 * Math.PI * (cfg.fourierScale ?? 1)) };
      continue;
    }
    const fanIn = name.endsWith(".weight") ? shape[0] : mlpParamShapes(cfg)[name.replace(".bias", ".weight")][0];
    const bound = 1 / Math.sqrt(fanIn);
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (2 * rng.uniform() - 1) * bound;
    out[name] = { shape, data };
  }
  return out;
}

/**
 * How the hidden layers hold a batch: "features-first" ([features, batch], h^T = W^T h^T + b) or
 * "batch-first" ([batch, features], h W + b). The same values either way; see mlpModel for which is faster where.
 */
export type MlpLayout = "features-first" | "batch-first";

/**
 * The MLP as a VelocityModel, for FlowTrainer, modelField and logLikelihood; its weights come
 * separately (initMlp or a checkpoint). Batch-first by default. A training step traced to
 * onnxruntime takes "features-first" (mlpFamily.model with runtime "onnxruntime"): onnxruntime's
 * matmuls on weights that are graph inputs are faster that way round (a [4096, 512] x [512, 512]
 * product with its bias 95 vs 81 GFLOP/s on one thread; MLP 512x3 batch 4096 step 0.91x, 256x3 batch
 * 256 0.97x). jax-js is not: its 256x3 training step is the same either way (41 ms), but sampling
 * 4,000 points with RK4 took 21.2 s features-first against 9.0 s. Graphs with the weights baked in
 * (exports) stay batch-first too, where onnxruntime pre-packs constant weights (RK4 sampling at batch
 * 4000: 14.5-15.0 ms per evaluation vs 15.3-15.7).
 */
export function mlpModel(cfg: MlpConfig, layout: MlpLayout = "batch-first"): VelocityModel {
  const layers = mlpLayerSizes(cfg).length - 1;
  return {
    apply(params: Params, x: Array, t: Array, labels: Array | null): Array {
      labels?.dispose();
      const tFeat = cfg.timeEmbDim > 0 ? timeEmbedding(t, cfg.timeEmbDim) : t.reshape([-1, 1]);
      let h: Array;
      if (fourierCount(cfg) > 0) {
        const proj = np.dot(x.ref, params["fourier.weight"].ref);
        h = np.concatenate([x, np.sin(proj.ref), np.cos(proj), tFeat], 1);
      } else h = np.concatenate([x, tFeat], 1);
      if (layout === "batch-first") {
        for (let i = 0; i < layers; i++) {
          h = np.dot(h, params[`layers.${i}.weight`].ref).add(params[`layers.${i}.bias`].ref);
          if (i + 1 < layers) h = silu(h);
        }
      } else {
        let ht = h.transpose([1, 0]);
        for (let i = 0; i < layers; i++) {
          const w = params[`layers.${i}.weight`].ref;
          ht = np.dot(w.transpose([1, 0]), ht).add(params[`layers.${i}.bias`].ref.reshape([-1, 1]));
          if (i + 1 < layers) ht = silu(ht);
        }
        h = ht.transpose([1, 0]);
      }
      for (const p of Object.values(params)) p.dispose();
      return h;
    },
  };
}

/** How many Fourier-feature pairs `cfg` puts at the input (0 when the option is absent). */
export function fourierCount(cfg: MlpConfig): number {
  return cfg.fourierFeatures ?? 0;
}

/**
 * Throws UserError unless `raw` is a whole MLP config (dim, hidden, depth >= 1; timeEmbDim >= 0;
 * fourierFeatures >= 0 and a positive fourierScale when present).
 */
export function parseMlpConfig(raw: unknown, source: string): MlpConfig {
  const r = configReader(raw);
  const cfg: MlpConfig = { dim: r.int("dim", 1), hidden: r.int("hidden", 1), depth: r.int("depth", 1), timeEmbDim: r.int("timeEmbDim", 0) };
  if (r.has("fourierFeatures")) {
    cfg.fourierFeatures = r.int("fourierFeatures", 0);
    const scale = (raw as Record<string, unknown>).fourierScale;
    cfg.fourierScale = typeof scale === "number" && Number.isFinite(scale) && scale > 0 ? scale : NaN;
  }
  const bad = invalidFields(cfg);
  if (bad.length > 0) {
    throw new UserError(
      `${source}: checkpoint config has no valid "model" section ` +
        `(${bad.join(", ")} missing or not valid numbers); re-run training to write it again`,
    );
  }
  return cfg;
}

/** The 2-D (and any low-dimensional) velocity MLP, saved as checkpoint kind "2d". */
export const mlpFamily: ModelFamily<MlpConfig> = {
  kind: "2d",
  name: "MLP",
  defaults: DEFAULT_MLP,
  parseConfig: parseMlpConfig,
  paramShapes: mlpParamShapes,
  paramCount: mlpParamCount,
  init: initMlp,
  model: (cfg, opts) => mlpModel(cfg, opts?.runtime === "onnxruntime" ? "features-first" : "batch-first"),
  sampleShape: (cfg) => [cfg.dim],
  nullLabel: () => null,
  describe: (cfg) =>
    `MLP ${cfg.depth}×${cfg.hidden}${fourierCount(cfg) > 0 ? `, ${fourierCount(cfg)} Fourier features (scale ${cfg.fourierScale})` : ""}`,
  memory: { trainBytes: mlpTrainBytes, forwardBytes: mlpForwardBytes, smaller: "--hidden or --depth" },
  shapeFlags: { layers: "--depth", sizes: "--hidden, --time-emb-dim, --fourier-features, or the data dimension" },
};
