// Turns a trained network into a host VelocityField for the solvers, with optional class labels
// and classifier-free guidance: v = v_uncond + w (v_cond - v_uncond) (Ho & Salimans 2022).
import { jit, np, tree, fromHost, toHost, type Array } from "../engine/index.js";
import type { HostParams, Params } from "./optim.js";
import { toEngine } from "./train.js";
import type { VelocityModel } from "./models/family.js";
import type { VelocityField } from "./solvers.js";

/** How modelField evaluates a network: the shape of one sample, and for conditional models the labels and the guidance weight. */
export interface ModelFieldOptions {
  /** Shape of one sample, e.g. [2] or [28, 28, 1]. */
  sampleShape: number[];
  /** Class label per sample (conditional models). */
  labels?: Int32Array;
  /** Guidance weight w; needs `labels` and `nullLabel`. w = 1 is plain conditional sampling. */
  guidance?: number;
  /** Label index the model was trained with for "no class" (label dropout). */
  nullLabel?: number;
}

/**
 * A network as a solver's VelocityField, with a count of the network evaluations made and dispose() to
 * free its engine copy of the weights.
 */
export interface DisposableField {
  field: VelocityField;
  /** Number of network evaluations so far (a guided evaluation counts once). */
  evaluations(): number;
  /** Frees the engine copy of the weights and the compiled forward pass; the field cannot be called after. */
  dispose(): void;
}

/** One network pass over a batch of n samples with their labels, on any runtime (engine, onnxruntime). */
export type LabelledForward = (x: Float32Array, t: number, labels: Int32Array) => Promise<Float32Array>;

/**
 * The velocity field of a (conditional) network: with guidance w != 1, classifier-free guidance
 * v = v_uncond + w (v_cond - v_uncond), the conditional and unconditional halves in one batch so an
 * evaluation is one network call. Without labels every sample gets label 0 (ignored by unconditional models).
 */
export function labelledField(forward: LabelledForward, opts: { sampleSize: number; labels?: Int32Array; guidance?: number; nullLabel?: number }): VelocityField {
  const guided = opts.guidance !== undefined && opts.guidance !== 1 && opts.labels !== undefined;
  if (guided && opts.nullLabel === undefined) throw new Error("guidance needs the model's null label");
  if (!guided) return (x, t) => forward(x, t, opts.labels ?? new Int32Array(x.length / opts.sampleSize));
  const labels = opts.labels as Int32Array;
  const w = opts.guidance as number;
  const n = labels.length;
  const yy = new Int32Array(2 * n);
  yy.set(labels);
  yy.fill(opts.nullLabel as number, n);
  return async (x, t) => {
    const xx = new Float32Array(2 * x.length);
    xx.set(x);
    xx.set(x, x.length);
    const v = await forward(xx, t, yy);
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const vc = v[i];
      const vu = v[x.length + i];
      out[i] = vu + w * (vc - vu);
    }
    return out;
  };
}

/**
 * Turns a trained network and its host weights into a VelocityField for odeint (one jitted network call per evaluation,
 * with classifier-free guidance for conditional models). Dispose of it when done sampling.
 */
export function modelField(model: VelocityModel, host: HostParams, opts: ModelFieldOptions): DisposableField {
  const params = toEngine(host);
  const forward = jit((p: Params, x: Array, t: Array, y: Array) => model.apply(p, x, t, y));
  const per = opts.sampleShape.reduce((a, b) => a * b, 1);
  const net = labelledField(
    (x, t, y) => {
      const n = y.length;
      return toHost(forward(tree.ref(params), fromHost(x, [n, ...opts.sampleShape]), np.full([n], t), np.array(y, { dtype: np.int32 })));
    },
    { sampleSize: per, labels: opts.labels, guidance: opts.guidance, nullLabel: opts.nullLabel },
  );
  let count = 0;
  const field: VelocityField = (x, t) => {
    count++;
    return net(x, t);
  };
  return {
    field,
    evaluations: () => count,
    dispose() {
      tree.dispose(params);
      forward.dispose();
    },
  };
}
