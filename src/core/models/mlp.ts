// The 2-D velocity network: an MLP on [x, embed(t)] with SiLU activations.
// Layer i has "layers.i.weight" [in, out] and "layers.i.bias" [out]; the last layer is linear.
import { np, type Array } from "../../engine/index.js";
import { silu } from "./layers.js";
import type { Rng } from "../rng.js";
import type { HostParams, Params } from "../optim.js";
import type { VelocityModel } from "../train.js";

export interface MlpConfig {
  /** Data dimension (2 for the toy sets). */
  dim: number;
  /** Width of each hidden layer. */
  hidden: number;
  /** Number of hidden layers. */
  depth: number;
  /** Sinusoidal time-embedding size; 0 feeds raw t as one extra input. */
  timeEmbDim: number;
}

export const DEFAULT_MLP: MlpConfig = { dim: 2, hidden: 256, depth: 3, timeEmbDim: 32 };

/** t in [0, 1] is scaled up before the sinusoidal embedding so its frequencies span the unit interval. */
export const TIME_EMBED_SCALE = 1000;

export function mlpLayerSizes(cfg: MlpConfig): number[] {
  const input = cfg.dim + (cfg.timeEmbDim > 0 ? cfg.timeEmbDim : 1);
  return [input, ...Array.from({ length: cfg.depth }, () => cfg.hidden), cfg.dim];
}

export function mlpParamShapes(cfg: MlpConfig): Record<string, number[]> {
  const sizes = mlpLayerSizes(cfg);
  const shapes: Record<string, number[]> = {};
  for (let i = 0; i + 1 < sizes.length; i++) {
    shapes[`layers.${i}.weight`] = [sizes[i], sizes[i + 1]];
    shapes[`layers.${i}.bias`] = [sizes[i + 1]];
  }
  return shapes;
}

/** PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases. */
export function initMlp(cfg: MlpConfig, rng: Rng): HostParams {
  const out: HostParams = {};
  for (const [name, shape] of Object.entries(mlpParamShapes(cfg))) {
    const fanIn = name.endsWith(".weight") ? shape[0] : mlpParamShapes(cfg)[name.replace(".bias", ".weight")][0];
    const bound = 1 / Math.sqrt(fanIn);
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (2 * rng.uniform() - 1) * bound;
    out[name] = { shape, data };
  }
  return out;
}

/** Transformer-style sinusoidal features [sin(t w_k), cos(t w_k)], w_k = 10000^(-k/half). Consumes t ([B]). */
export function timeEmbedding(t: Array, dim: number): Array {
  const half = Math.floor(dim / 2);
  const freqs = new Float32Array(half);
  for (let k = 0; k < half; k++) freqs[k] = Math.exp((-Math.log(10000) * k) / half);
  const args = t.mul(TIME_EMBED_SCALE).reshape([-1, 1]).mul(np.array([...freqs], { dtype: t.dtype }).reshape([1, half]));
  return np.concatenate([np.sin(args.ref), np.cos(args)], 1);
}

export function mlpModel(cfg: MlpConfig): VelocityModel {
  const layers = mlpLayerSizes(cfg).length - 1;
  return {
    apply(params: Params, x: Array, t: Array, labels: Array | null): Array {
      labels?.dispose();
      const tFeat = cfg.timeEmbDim > 0 ? timeEmbedding(t, cfg.timeEmbDim) : t.reshape([-1, 1]);
      let h = np.concatenate([x, tFeat], 1);
      for (let i = 0; i < layers; i++) {
        h = np.dot(h, params[`layers.${i}.weight`].ref).add(params[`layers.${i}.bias`].ref);
        if (i + 1 < layers) h = silu(h);
      }
      for (const p of Object.values(params)) p.dispose();
      return h;
    },
  };
}
