// Adam (Kingma & Ba 2015) and an exponential moving average of weights, written as pure functions
// over parameter records so they trace into the jitted training step.
import { np, type Array } from "../engine/index.js";

/** Model parameters on the engine, by dotted name (e.g. "layers.0.weight"). */
export type Params = Record<string, Array>;
/** A float32 tensor on the host: row-major data with its shape. */
export interface HostArray {
  shape: number[];
  data: Float32Array;
}
/** Model parameters on the host, by dotted name: the form checkpoints and ONNX export take. */
export type HostParams = Record<string, HostArray>;

/** Adam settings of a FlowTrainer (DEFAULT_ADAM unless you choose otherwise). */
export interface AdamConfig {
  /** Learning rate. */
  lr: number;
  /** Decay of the first-moment average. */
  beta1: number;
  /** Decay of the second-moment average. */
  beta2: number;
  /** Added to the root of the second moment. */
  eps: number;
  /** Decoupled weight decay (AdamW): each step also subtracts lr * weightDecay * p (0 = off). */
  weightDecay: number;
  /** Clip the global gradient norm to this value (0 = off). */
  clipNorm: number;
}

/** lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay, gradient norm clipped to 1. */
export const DEFAULT_ADAM: AdamConfig = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clipNorm: 1 };

export interface AdamState {
  m: Params;
  v: Params;
}

/**
 * Bias-corrected step size for step k (1-based), computed on the host so the jitted update
 * does not depend on the step count: lr * sqrt(1 - b2^k) / (1 - b1^k).
 */
export function adamStepSize(cfg: AdamConfig, k: number, lr = cfg.lr): number {
  return (lr * Math.sqrt(1 - Math.pow(cfg.beta2, k))) / (1 - Math.pow(cfg.beta1, k));
}

/** sqrt of the sum of squares of every gradient (scalar array); reads grads through .ref. */
export function globalNorm(grads: Params): Array {
  let sq: Array | null = null;
  for (const g of Object.values(grads)) {
    const s = np.sum(np.square(g.ref));
    sq = sq === null ? s : sq.add(s);
  }
  return np.sqrt(sq ?? np.zeros([]));
}

/**
 * One Adam update. Consumes params, grads and state; `stepSize` is a scalar array from adamStepSize.
 * Gradient clipping by global norm happens here because it needs every gradient at once; pass
 * `norm` (globalNorm(grads), consumed) when the caller has it already.
 */
export function adamUpdate(
  cfg: AdamConfig,
  params: Params,
  grads: Params,
  state: AdamState,
  stepSize: Array,
  norm?: Array,
): { params: Params; state: AdamState } {
  const names = Object.keys(params);
  let scale: Array | null = null;
  if (cfg.clipNorm > 0) {
    const n = norm ?? globalNorm(grads);
    scale = np.minimum(np.divide(cfg.clipNorm, n.add(1e-6)), 1);
  } else {
    norm?.dispose();
  }
  const out: Params = {};
  const m: Params = {};
  const v: Params = {};
  for (const name of names) {
    const g = scale === null ? grads[name] : grads[name].mul(scale.ref);
    const mNew = state.m[name].mul(cfg.beta1).add(g.ref.mul(1 - cfg.beta1));
    const vNew = state.v[name].mul(cfg.beta2).add(np.square(g).mul(1 - cfg.beta2));
    let update = mNew.ref.div(np.sqrt(vNew.ref).add(cfg.eps)).mul(stepSize.ref);
    const p = params[name];
    if (cfg.weightDecay > 0) update = update.add(p.ref.mul(cfg.weightDecay * cfg.lr));
    out[name] = p.sub(update);
    m[name] = mNew;
    v[name] = vNew;
  }
  scale?.dispose();
  stepSize.dispose();
  return { params: out, state: { m, v } };
}

/** ema <- decay * ema + (1 - decay) * params. Consumes ema and decay (a scalar array), reads params through .ref. */
export function emaUpdate(ema: Params, params: Params, decay: Array): Params {
  const out: Params = {};
  for (const name of Object.keys(ema)) {
    const p = params[name].ref;
    // ema + (1 - decay) (p - ema) = decay ema + (1 - decay) p
    out[name] = ema[name].ref.add(p.sub(ema[name]).mul(np.subtract(1, decay.ref)));
  }
  decay.dispose();
  return out;
}

/**
 * EMA decay at step k (1-based) with warm-up, min(decay, (1 + k) / (10 + k)), so a short run's EMA
 * is not dominated by the random initial weights.
 */
export function emaDecayAt(decay: number, k: number): number {
  return Math.min(decay, (1 + k) / (10 + k));
}

/** Zero-initialised Adam moments with the same shapes as params (params are not consumed). */
export function initAdamState(params: Params): AdamState {
  const m: Params = {};
  const v: Params = {};
  for (const [name, p] of Object.entries(params)) {
    m[name] = np.zeros(p.shape);
    v[name] = np.zeros(p.shape);
  }
  return { m, v };
}
