// Exact log-likelihood of a flow (Chen et al. 2018; Grathwohl et al. 2019, FFJORD): integrate the
// ODE backwards from data (t = 1) to noise (t = 0) together with the divergence of the field.
// Since d/dt log p_t(x_t) = -div v(x_t, t), log p1(x1) = log N(x0; 0, I) - int_0^1 div v(x_t, t) dt.
import { jit, jvp, np, tree, fromHost, toHost, type Array } from "../engine/index.js";
import { Rng } from "./rng.js";
import { UserError } from "./errors.js";
import { odeint, type SolverName, type VelocityField } from "./solvers.js";
import type { HostParams, Params } from "./optim.js";
import { toEngine, type VelocityModel } from "./train.js";

/** Velocity and divergence of a batch: `v` has x's length, `div` one value per sample. */
export type FieldWithDivergence = (x: Float32Array, t: number) => Promise<{ v: Float32Array; div: Float32Array }>;

export type DivergenceMode = "exact" | { hutchinson: number; seed: number };

export interface LogLikelihoodOptions {
  /** Shape of one sample, e.g. [2] or [28, 28, 1]. */
  sampleShape: number[];
  solver?: SolverName;
  rtol?: number;
  atol?: number;
  nfe?: number;
}

export interface LogLikelihoodResult {
  /** log p1(x) per sample, in nats. */
  logp: Float64Array;
  /** log N(x0; 0, I) of the noise each sample maps to. */
  logp0: Float64Array;
  /** -int_0^1 div v dt per sample (the change-of-variables term). */
  deltaLogp: Float64Array;
  /** The noise each sample maps to. */
  x0: Float32Array;
  nfe: number;
}

const LOG_2PI = Math.log(2 * Math.PI);

/** log N(x; 0, I) per sample. */
export function gaussianLogDensity(x: Float32Array, dim: number): Float64Array {
  const n = x.length / dim;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = 0; d < dim; d++) s += x[i * dim + d] ** 2;
    out[i] = -0.5 * (dim * LOG_2PI + s);
  }
  return out;
}

/** Integrate [x, L] from t = 1 to 0 with dx/dt = v and dL/dt = div v; log p1 = log p0(x0) + L(0). */
export async function logLikelihoodWith(field: FieldWithDivergence, x: Float32Array, opts: LogLikelihoodOptions): Promise<LogLikelihoodResult> {
  const dim = opts.sampleShape.reduce((a, b) => a * b, 1);
  if (x.length % dim !== 0) throw new UserError(`data has ${x.length} values, not a whole number of samples of shape [${opts.sampleShape.join(", ")}]`);
  const n = x.length / dim;
  const state = new Float32Array(x.length + n);
  state.set(x);
  const augmented: VelocityField = async (s, t) => {
    const { v, div } = await field(s.subarray(0, n * dim), t);
    const out = new Float32Array(s.length);
    out.set(v);
    out.set(div, n * dim);
    return out;
  };
  const r = await odeint(augmented, state, { solver: opts.solver ?? "dopri5", t0: 1, t1: 0, rtol: opts.rtol ?? 1e-5, atol: opts.atol ?? 1e-5, nfe: opts.nfe });
  const x0 = r.x.slice(0, n * dim);
  const logp0 = gaussianLogDensity(x0, dim);
  const deltaLogp = Float64Array.from(r.x.subarray(n * dim));
  const logp = logp0.map((v, i) => v + deltaLogp[i]);
  return { logp, logp0, deltaLogp, x0, nfe: r.nfe };
}

/**
 * The model's velocity with its divergence on the engine, one jitted call per evaluation:
 * exactly with one jvp per input dimension (basis tangents), or with Hutchinson's estimator
 * E[eps^T J eps] over fixed probes (Rademacher), the same probes for the whole integration.
 */
export function modelDivergenceField(
  model: VelocityModel,
  host: HostParams,
  opts: { sampleShape: number[]; divergence: DivergenceMode; labels?: Int32Array },
): { field: FieldWithDivergence; dispose: () => void } {
  const params = toEngine(host);
  const dim = opts.sampleShape.reduce((a, b) => a * b, 1);
  const mode = opts.divergence;
  if (mode !== "exact" && !(Number.isInteger(mode.hutchinson) && mode.hutchinson >= 1)) {
    throw new UserError(`--probes must be a positive integer, got ${mode.hutchinson}`);
  }
  let probes: Float32Array[] | null = null;
  const probeCount = mode === "exact" ? dim : mode.hutchinson;
  const compute = jit((p: Params, x: Array, t: Array, y: Array, tangents: Array[]) => {
    const f = (xx: Array) => model.apply(tree.ref(p), xx, t.ref, y.ref);
    let v: Array | null = null;
    let div: Array | null = null;
    const axes = opts.sampleShape.map((_, i) => i + 1);
    for (const e of tangents) {
      const [out, jv] = jvp(f, [x.ref], [e.ref]) as [Array, Array];
      const term = np.sum(jv.mul(e), axes);
      div = div === null ? term : div.add(term);
      if (v === null) v = out;
      else out.dispose();
    }
    tree.dispose(p);
    x.dispose();
    t.dispose();
    y.dispose();
    return [v as Array, (div as Array).mul(1 / (mode === "exact" ? 1 : probeCount))] as [Array, Array];
  });
  const field: FieldWithDivergence = async (x, t) => {
    const n = x.length / dim;
    if (!probes || probes[0].length !== x.length) {
      probes = [];
      const rng = new Rng(mode === "exact" ? 0 : mode.seed);
      for (let k = 0; k < probeCount; k++) {
        const e = new Float32Array(x.length);
        if (mode === "exact") for (let i = 0; i < n; i++) e[i * dim + k] = 1;
        else for (let i = 0; i < e.length; i++) e[i] = rng.uniform() < 0.5 ? -1 : 1;
        probes.push(e);
      }
    }
    const shape = [n, ...opts.sampleShape];
    const [v, div] = compute(
      tree.ref(params),
      fromHost(x, shape),
      np.full([n], t),
      np.array(opts.labels ?? new Int32Array(n), { dtype: np.int32 }),
      probes.map((e) => fromHost(e, shape)),
    );
    return { v: await toHost(v), div: await toHost(div) };
  };
  return {
    field,
    dispose() {
      tree.dispose(params);
      compute.dispose();
    },
  };
}

/**
 * Bits per dimension for 8-bit images mapped to [-1, 1] by x = 2 (k + u) / 256 - 1 with uniform
 * dequantisation noise u ~ U(0, 1). The map from [0, 256)^D to [-1, 1]^D has Jacobian (2/256)^D,
 * so the discrete log-likelihood is bounded below by log p(x) + D log(2/256), and
 * bpd = -(log p(x) + D log(2/256)) / (D ln 2) = -log p(x) / (D ln 2) + 7.
 */
export function bitsPerDim(logp: number, dims: number): number {
  return -(logp + dims * Math.log(2 / 256)) / (dims * Math.LN2);
}
