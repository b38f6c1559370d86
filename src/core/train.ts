// The flow-matching training step: sample a point on the probability path, regress the model's
// velocity onto the conditional target, update with Adam and refresh the EMA weights — all inside
// one jit-compiled function (outside jit the engine leaks memory and runs 2-3x slower).
import { jit, np, tree, valueAndGrad, fromHost, toHost, type Array } from "../engine/index.js";
import { adamStepSize, adamUpdate, emaDecayAt, emaUpdate, initAdamState, type AdamConfig, type AdamState, type HostParams, type Params } from "./optim.js";

/** A velocity network v(x, t[, y]). `apply` consumes its arguments (jax-js ownership). */
export interface VelocityModel {
  apply(params: Params, x: Array, t: Array, labels: Array | null): Array;
}

/** A training batch on the host: noise x0, data x1, times t, path coefficients, optional labels. */
export interface FlowBatch {
  x0: Float32Array;
  x1: Float32Array;
  t: Float32Array;
  /** [n, 4] packed (alpha, sigma, dAlpha, dSigma) from pathCoefficients(). */
  coef: Float32Array;
  labels?: Int32Array;
}

/** Everything the optimizer carries between steps, as engine arrays. */
export type TrainState = { params: Params; m: Params; v: Params; ema: Params };

/** What the training loop and pipelines need from a trainer, whichever backend runs the step. */
export interface Trainer {
  /** Number of optimizer steps taken so far (continues across resume). */
  readonly stepCount: number;
  /** One optimizer step; resolves to the batch loss. `lr` overrides the configured rate (schedules). */
  step(batch: FlowBatch, lr?: number): Promise<number>;
  /** Copy the current weights (or their EMA) to the host. */
  hostParams(which?: "params" | "ema"): Promise<HostParams>;
  /** Everything needed to resume: weights, EMA and Adam moments. */
  hostState(): Promise<{ params: HostParams; ema: HostParams; m: HostParams; v: HostParams }>;
  dispose(): void;
}

/** The training step's signature: state and batch in, new state and the loss out. */
export type TrainStepFn = (
  state: TrainState,
  x0: Array,
  x1: Array,
  t: Array,
  coef: Array,
  labels: Array,
  stepSize: Array,
  emaDecay: Array,
) => [TrainState, Array];

export interface TrainerOptions {
  model: VelocityModel;
  params: HostParams;
  /** Shape of one sample, e.g. [2] or [28, 28, 1]. */
  sampleShape: number[];
  adam: AdamConfig;
  emaDecay: number;
  /** Resume from a previous run: EMA weights, Adam moments and the step count. */
  resume?: { ema: HostParams; m: HostParams; v: HostParams; step: number };
}

/** CFM mean-squared error for one batch; consumes everything. Exposed for tests and reflow. */
export function cfmLoss(
  model: VelocityModel,
  params: Params,
  x0: Array,
  x1: Array,
  t: Array,
  alpha: Array,
  sigma: Array,
  dAlpha: Array,
  dSigma: Array,
  labels: Array | null,
): Array {
  const xt = alpha.mul(x1.ref).add(sigma.mul(x0.ref));
  const target = dAlpha.mul(x1).add(dSigma.mul(x0));
  const v = model.apply(params, xt, t, labels);
  return np.mean(np.square(v.sub(target)));
}

/**
 * The whole training step (loss, gradient, Adam, EMA) as one function of arrays: the jax backend
 * jits it, the ort backend traces it into an ONNX graph. Learning rate (inside stepSize) and EMA
 * decay are inputs, so schedules need no new compilation.
 */
export function trainStepFn(opts: Pick<TrainerOptions, "model" | "adam" | "sampleShape">): TrainStepFn {
  const { model, adam } = opts;
  // Labels always travel as an array (ignored by unconditional models) so one trace serves both.
  const broadcast = [-1, ...opts.sampleShape.map(() => 1)];
  return (state, x0, x1, t, coef, labels, stepSize, decay) => {
    // coef is [n, 4] = (alpha, sigma, dAlpha, dSigma): one upload instead of four.
    const [alpha, sigma, dAlpha, dSigma] = np.split(coef, 4, 1).map((c) => c.reshape(broadcast));
    const lossOf = (p: Params) =>
      cfmLoss(model, p, x0.ref, x1.ref, t.ref, alpha.ref, sigma.ref, dAlpha.ref, dSigma.ref, labels.ref);
    const [loss, grads] = valueAndGrad(lossOf)(tree.ref(state.params));
    tree.dispose([x0, x1, t, alpha, sigma, dAlpha, dSigma, labels]);
    const { params, state: opt } = adamUpdate(adam, state.params, grads, { m: state.m, v: state.v }, stepSize);
    const ema = emaUpdate(state.ema, params, decay);
    return [{ params, m: opt.m, v: opt.v, ema }, loss];
  };
}

/** Host scalars fed to the step numbered k (1-based): Adam's bias-corrected step size and the EMA decay. */
export function stepScalars(opts: Pick<TrainerOptions, "adam" | "emaDecay">, k: number, lr?: number): { stepSize: number; emaDecay: number } {
  return { stepSize: adamStepSize(opts.adam, k, lr), emaDecay: emaDecayAt(opts.emaDecay, k) };
}

/** The jax backend: the step jit-compiled by jax-js (Wasm in Node; Wasm or WebGPU in browsers). */
export class FlowTrainer implements Trainer {
  private state: TrainState;
  private readonly stepFn: TrainStepFn;
  private readonly opts: TrainerOptions;
  /** Number of optimizer steps taken so far (continues across resume). */
  stepCount: number;

  constructor(opts: TrainerOptions) {
    this.opts = opts;
    const params = toEngine(opts.params);
    let opt: AdamState;
    let ema: Params;
    if (opts.resume) {
      opt = { m: toEngine(opts.resume.m), v: toEngine(opts.resume.v) };
      ema = toEngine(opts.resume.ema);
      this.stepCount = opts.resume.step;
    } else {
      opt = initAdamState(params);
      ema = toEngine(opts.params);
      this.stepCount = 0;
    }
    this.state = { params, m: opt.m, v: opt.v, ema };
    this.stepFn = jit(trainStepFn(opts)) as unknown as TrainStepFn;
  }

  /** One optimizer step; resolves to the batch loss. `lr` overrides the configured rate (schedules). */
  async step(batch: FlowBatch, lr?: number): Promise<number> {
    const n = batch.t.length;
    const full = [n, ...this.opts.sampleShape];
    const labels = np.array(batch.labels ?? new Int32Array(n), { dtype: np.int32 });
    this.stepCount += 1;
    const scalars = stepScalars(this.opts, this.stepCount, lr);
    const stepSize = np.array(scalars.stepSize);
    const [state, loss] = this.stepFn(
      this.state,
      fromHost(batch.x0, full),
      fromHost(batch.x1, full),
      fromHost(batch.t, [n]),
      fromHost(batch.coef, [n, 4]),
      labels,
      stepSize,
      np.array(scalars.emaDecay),
    );
    this.state = state;
    return (await toHost(loss))[0];
  }

  /** Copy the current weights (or their EMA) to the host. */
  async hostParams(which: "params" | "ema" = "params"): Promise<HostParams> {
    return toHostParams(this.state[which]);
  }

  /** Everything needed to resume: weights, EMA and Adam moments. */
  async hostState(): Promise<{ params: HostParams; ema: HostParams; m: HostParams; v: HostParams }> {
    return {
      params: await toHostParams(this.state.params),
      ema: await toHostParams(this.state.ema),
      m: await toHostParams(this.state.m),
      v: await toHostParams(this.state.v),
    };
  }

  dispose(): void {
    tree.dispose(this.state);
    (this.stepFn as unknown as { dispose?: () => void }).dispose?.();
  }
}

export function toEngine(host: HostParams): Params {
  const out: Params = {};
  for (const [name, { shape, data }] of Object.entries(host)) out[name] = fromHost(data, shape);
  return out;
}

export async function toHostParams(params: Params): Promise<HostParams> {
  const out: HostParams = {};
  for (const [name, a] of Object.entries(params)) {
    const shape = a.shape.slice();
    out[name] = { shape, data: await toHost(a.ref) };
  }
  return out;
}
