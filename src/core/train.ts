// The flow-matching training step: sample a point on the probability path, regress the model's
// velocity onto the conditional target, update with Adam and refresh the EMA weights — all inside
// one jit-compiled function (outside jit the engine leaks memory and runs 2-3x slower).
// A step whose loss or gradient norm is not finite is skipped: weights, Adam moments, EMA and the
// update count stay as they were, so one bad batch cannot poison the run.
import { jit, np, tree, valueAndGrad, fromHost, toHost, type Array } from "../engine/index.js";
import {
  adamStepSize,
  adamUpdate,
  emaDecayAt,
  emaUpdate,
  globalNorm,
  initAdamState,
  type AdamConfig,
  type AdamState,
  type HostParams,
  type Params,
} from "./optim.js";
import type { VelocityModel } from "./models/family.js";

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
  /** Steps taken so far, one batch each, applied or skipped (continues across resume). */
  readonly stepCount: number;
  /** Steps skipped because their loss or gradient was not finite (continues across resume). */
  readonly skippedSteps: number;
  /** The outcome of the last step() call (null before the first). */
  readonly lastStep: StepOutcome | null;
  /**
   * One optimizer step; resolves to the batch loss. `lr` overrides the configured rate (schedules).
   * If the loss or the gradient norm is not finite the update is dropped (see lastStep.applied).
   */
  step(batch: FlowBatch, lr?: number): Promise<number>;
  /** Copy the current weights (or their EMA) to the host. */
  hostParams(which?: "params" | "ema"): Promise<HostParams>;
  /** Everything needed to resume: weights, EMA and Adam moments. */
  hostState(): Promise<{ params: HostParams; ema: HostParams; m: HostParams; v: HostParams }>;
  /** Frees the engine memory the trainer holds (weights, moments, compiled step); it cannot step after. */
  dispose(): void;
}

/** The training step's signature: state and batch in, new state and [loss, gradient norm] out. */
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

/** What the last call of FlowTrainer.step did. */
export interface StepOutcome {
  loss: number;
  /** Global L2 norm of the gradient, before clipping. */
  gradNorm: number;
  /** False when the loss or the gradient norm was not finite: nothing was updated. */
  applied: boolean;
}

/** What a FlowTrainer trains and how: the network, its starting weights, Adam settings and EMA decay. */
export interface TrainerOptions {
  /** The network (mlpModel, unetModel, or a ModelFamily's model). */
  model: VelocityModel;
  /** Starting weights on the host (initMlp, initUnetParams, or a checkpoint's). */
  params: HostParams;
  /** Shape of one sample, e.g. [2] or [28, 28, 1]. */
  sampleShape: number[];
  adam: AdamConfig;
  /** Decay of the weights' exponential moving average (warmed up over the first steps), e.g. 0.999. */
  emaDecay: number;
  /** Resume from a previous run: EMA weights, Adam moments, the step count and how many steps were skipped. */
  resume?: { ema: HostParams; m: HostParams; v: HostParams; step: number; skipped?: number };
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

/** Mean loss and parameter gradient of one batch: the first half of a training step. */
export type LossGradFn = (params: Params, x0: Array, x1: Array, t: Array, coef: Array, labels: Array) => [Array, Params];

/**
 * The CFM loss of a batch and its gradient (consumes its arguments). Inputs as trainStepFn's;
 * data-parallel training runs it once per shard of the batch (shardedUpdateFn sums the shards).
 */
export function lossGradFn(opts: Pick<TrainerOptions, "model" | "sampleShape">): LossGradFn {
  const { model } = opts;
  // Labels always travel as an array (ignored by unconditional models) so one trace serves both.
  const broadcast = [-1, ...opts.sampleShape.map(() => 1)];
  return (params, x0, x1, t, coef, labels) => {
    // coef is [n, 4] = (alpha, sigma, dAlpha, dSigma): one upload instead of four.
    const [alpha, sigma, dAlpha, dSigma] = np.split(coef, 4, 1).map((c) => c.reshape(broadcast));
    const lossOf = (p: Params) => cfmLoss(model, p, x0.ref, x1.ref, t.ref, alpha.ref, sigma.ref, dAlpha.ref, dSigma.ref, labels.ref);
    const out = valueAndGrad(lossOf)(params);
    tree.dispose([x0, x1, t, alpha, sigma, dAlpha, dSigma, labels]);
    return out;
  };
}

/** Clipping, Adam and EMA from a batch's loss and gradient: the second half of a step (consumes everything). */
function applyGradients(
  adam: AdamConfig,
  state: TrainState,
  grads: Params,
  loss: Array,
  stepSize: Array,
  decay: Array,
): [TrainState, Array] {
  const norm = globalNorm(grads);
  const { params, state: opt } = adamUpdate(adam, state.params, grads, { m: state.m, v: state.v }, stepSize, norm.ref);
  const ema = emaUpdate(state.ema, params, decay);
  // [loss, gradient norm]: one download tells the host whether to keep the new state.
  return [{ params, m: opt.m, v: opt.v, ema }, np.stack([loss, norm])];
}

/**
 * The whole training step (loss, gradient, Adam, EMA) as one function of arrays: the jax backend
 * jits it, the ort backend traces it into an ONNX graph. Learning rate (inside stepSize) and EMA
 * decay are inputs, so schedules need no new compilation.
 */
export function trainStepFn(opts: Pick<TrainerOptions, "model" | "adam" | "sampleShape">): TrainStepFn {
  const lossGrad = lossGradFn(opts);
  return (state, x0, x1, t, coef, labels, stepSize, decay) => {
    const [loss, grads] = lossGrad(tree.ref(state.params), x0, x1, t, coef, labels);
    return applyGradients(opts.adam, state, grads, loss, stepSize, decay);
  };
}

/** The update of a data-parallel step from its shards' gradients, losses and weights ([shards]). */
export type ShardedUpdateFn = (
  state: TrainState,
  grads: Params[],
  losses: Array,
  weights: Array,
  stepSize: Array,
  emaDecay: Array,
) => [TrainState, Array];

/**
 * The update of a data-parallel step: the batch's n samples were split into shards, shard i (n_i
 * samples) brought its mean loss and gradient from lossGradFn, and weights[i] = n_i / n. The
 * weighted sums are exactly the whole batch's mean loss and gradient because the loss is a mean
 * over samples and every model treats samples independently (GroupNorm, never BatchNorm); then
 * clipping, Adam and EMA as in trainStepFn. Consumes everything.
 */
export function shardedUpdateFn(opts: Pick<TrainerOptions, "adam">): ShardedUpdateFn {
  return (state, grads, losses, weights, stepSize, decay) => {
    const loss = np.sum(losses.mul(weights.ref));
    const w = np.split(weights, grads.length, 0).map((x) => x.reshape([]));
    const total: Params = {};
    for (const name of Object.keys(grads[0])) {
      let sum = grads[0][name].mul(w[0].ref);
      for (let i = 1; i < grads.length; i++) sum = sum.add(grads[i][name].mul(w[i].ref));
      total[name] = sum;
    }
    tree.dispose(w);
    return applyGradients(opts.adam, state, total, loss, stepSize, decay);
  };
}

/** Host scalars fed to the step numbered k (1-based): Adam's bias-corrected step size and the EMA decay. */
export function stepScalars(
  opts: Pick<TrainerOptions, "adam" | "emaDecay">,
  k: number,
  lr?: number,
): { stepSize: number; emaDecay: number } {
  return { stepSize: adamStepSize(opts.adam, k, lr), emaDecay: emaDecayAt(opts.emaDecay, k) };
}

/** The jax backend: the step jit-compiled by jax-js (Wasm in Node; Wasm or WebGPU in browsers). */
export class FlowTrainer implements Trainer {
  private state: TrainState;
  private readonly stepFn: TrainStepFn;
  private readonly opts: TrainerOptions;
  /** Steps taken so far, one batch each, applied or skipped (continues across resume). */
  stepCount: number;
  /** Steps skipped because their loss or gradient was not finite (continues across resume). */
  skippedSteps: number;
  /** The outcome of the last step() call (null before the first). */
  lastStep: StepOutcome | null = null;

  constructor(opts: TrainerOptions) {
    this.opts = opts;
    const params = toEngine(opts.params);
    let opt: AdamState;
    let ema: Params;
    if (opts.resume) {
      opt = { m: toEngine(opts.resume.m), v: toEngine(opts.resume.v) };
      ema = toEngine(opts.resume.ema);
      this.stepCount = opts.resume.step;
      this.skippedSteps = opts.resume.skipped ?? 0;
    } else {
      opt = initAdamState(params);
      ema = toEngine(opts.params);
      this.stepCount = 0;
      this.skippedSteps = 0;
    }
    this.state = { params, m: opt.m, v: opt.v, ema };
    this.stepFn = jit(trainStepFn(opts)) as unknown as TrainStepFn;
  }

  /**
   * One optimizer step; resolves to the batch loss. `lr` overrides the configured rate (schedules).
   * If the loss or the gradient norm is not finite the update is dropped (see lastStep.applied).
   */
  async step(batch: FlowBatch, lr?: number): Promise<number> {
    const n = batch.t.length;
    const full = [n, ...this.opts.sampleShape];
    const labels = np.array(batch.labels ?? new Int32Array(n), { dtype: np.int32 });
    this.stepCount += 1;
    // Adam's bias correction and the EMA warm-up count applied updates only.
    const k = this.stepCount - this.skippedSteps;
    const scalars = stepScalars(this.opts, k, lr);
    const stepSize = np.array(scalars.stepSize);
    // The old state stays alive (refs) until the host knows whether the new one is finite.
    const old = this.state;
    const [state, stats] = this.stepFn(
      tree.ref(old),
      fromHost(batch.x0, full),
      fromHost(batch.x1, full),
      fromHost(batch.t, [n]),
      fromHost(batch.coef, [n, 4]),
      labels,
      stepSize,
      np.array(scalars.emaDecay),
    );
    const [loss, gradNorm] = await toHost(stats);
    const applied = Number.isFinite(loss) && Number.isFinite(gradNorm);
    if (applied) {
      tree.dispose(old);
      this.state = state;
    } else {
      tree.dispose(state);
      this.skippedSteps += 1;
    }
    this.lastStep = { loss, gradNorm, applied };
    return loss;
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

  /** Frees the engine memory the trainer holds (weights, moments, compiled step); it cannot step after. */
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
