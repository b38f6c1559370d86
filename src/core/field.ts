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

/**
 * The guided velocity on the engine: v = v_uncond + w (v_cond - v_uncond), conditional and
 * unconditional halves in one network call of batch 2B (the form traced into guided ONNX exports).
 * x [B, ...], t [B], y [B] int32, w a float32 scalar; consumes them and params (like model.apply).
 */
export function guidedVelocity(model: VelocityModel, params: Params, x: Array, t: Array, y: Array, w: Array, nullLabel: number): Array {
  const n = x.shape[0];
  // From y itself (not np.full) so a traced graph keeps the batch symbolic.
  const yNull = y.ref.mul(0).add(nullLabel);
  const v = model.apply(params, np.concatenate([x.ref, x], 0), np.concatenate([t.ref, t], 0), np.concatenate([y, yNull], 0));
  const vc = v.ref.slice([0, n]);
  const vu = v.slice([n, 2 * n]);
  return vu.ref.add(w.mul(vc.sub(vu)));
}

/**
 * Turns a trained network and its host weights into a VelocityField for odeint (one jitted network call per evaluation,
 * with classifier-free guidance for conditional models). Dispose of it when done sampling.
 */
export function modelField(model: VelocityModel, host: HostParams, opts: ModelFieldOptions): DisposableField {
  const params = toEngine(host);
  const forward = jit((p: Params, x: Array, t: Array, y: Array) => model.apply(p, x, t, y));
  const nullLabel = opts.nullLabel as number;
  const guidedForward = jit((p: Params, x: Array, t: Array, y: Array, w: Array) => guidedVelocity(model, p, x, t, y, w, nullLabel));
  const per = opts.sampleShape.reduce((a, b) => a * b, 1);
  const guided = opts.guidance !== undefined && opts.guidance !== 1 && opts.labels !== undefined;
  if (guided && opts.nullLabel === undefined) throw new Error("guidance needs the model's null label");
  let count = 0;
  const field: VelocityField = async (x, t) => {
    const n = x.length / per;
    count++;
    if (!guided) {
      const y = opts.labels ?? new Int32Array(n);
      const v = forward(tree.ref(params), fromHost(x, [n, ...opts.sampleShape]), np.full([n], t), np.array(y, { dtype: np.int32 }));
      return toHost(v);
    }
    // guidedVelocity: both halves in one network call per evaluation (the formula ONNX exports trace).
    const v = guidedForward(
      tree.ref(params),
      fromHost(x, [n, ...opts.sampleShape]),
      np.full([n], t),
      np.array(opts.labels as Int32Array, { dtype: np.int32 }),
      np.array(opts.guidance as number, { dtype: np.float32 }),
    );
    return toHost(v);
  };
  return {
    field,
    evaluations: () => count,
    dispose() {
      tree.dispose(params);
      forward.dispose();
      guidedForward.dispose();
    },
  };
}
