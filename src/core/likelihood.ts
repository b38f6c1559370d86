// Exact log-likelihood of a flow (Chen et al. 2018; Grathwohl et al. 2019, FFJORD): integrate the
// ODE backwards from data (t = 1) to noise (t = 0) together with the divergence of the field.
// Since d/dt log p_t(x_t) = -div v(x_t, t), log p1(x1) = log N(x0; 0, I) - int_0^1 div v(x_t, t) dt.
import { jit, jvp, np, tree, fromHost, toHost, type Array } from "../engine/index.js";
import { Rng } from "./rng.js";
import { UserError } from "./errors.js";
import { odeint, type SolverName, type VelocityField } from "./solvers.js";
import type { HostParams, Params } from "./optim.js";
import { toEngine } from "./train.js";
import type { VelocityModel } from "./models/family.js";

/**
 * Velocity and divergence of a batch of n samples: `v` has x's length; `div` holds K estimates of
 * each sample's divergence laid out [K, n] (K = 1 for an exact divergence, K = probes for
 * Hutchinson). Keeping the K estimates apart lets the integral carry one accumulator per probe, so
 * the spread across probes gives a standard error of log p.
 */
export type FieldWithDivergence = (x: Float32Array, t: number) => Promise<{ v: Float32Array; div: Float32Array }>;

/** Hutchinson probes: Rademacher (+-1, lower variance) or standard Gaussian. */
export type ProbeKind = "rademacher" | "gaussian";

/** How the divergence is computed: exactly (one jvp per dimension) or by Hutchinson probes with a seed. */
export type DivergenceMode = "exact" | { hutchinson: number; seed: number; probe?: ProbeKind };

/** Options of logLikelihoodWith: the sample shape and the ODE solve (Dopri5 with rtol = atol = 1e-5 unless set). */
export interface LogLikelihoodOptions {
  /** Shape of one sample, e.g. [2] or [28, 28, 1]. */
  sampleShape: number[];
  solver?: SolverName;
  rtol?: number;
  atol?: number;
  nfe?: number;
  /** K, the number of divergence estimates per sample the field returns (default 1). */
  estimates?: number;
}

/** Per-sample log-likelihoods and their parts, and the evaluations made. */
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
  /** Standard error of log p over the K divergence estimates (only when K >= 2). */
  stderr?: Float64Array;
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

/**
 * Integrate [x, L_1..L_K] from t0 to t1 with dx/dt = v and dL_k/dt = div_k v (K divergence
 * estimates per sample): the end state, and per sample the mean over k of L_k(t1) with its
 * standard error over the estimates (K >= 2).
 */
async function integrateWithDivergence(
  field: FieldWithDivergence,
  x: Float32Array,
  t0: number,
  t1: number,
  opts: LogLikelihoodOptions,
): Promise<{ x: Float32Array; integral: Float64Array; stderr?: Float64Array; nfe: number }> {
  const dim = opts.sampleShape.reduce((a, b) => a * b, 1);
  if (x.length % dim !== 0)
    throw new UserError(`data has ${x.length} values, not a whole number of samples of shape [${opts.sampleShape.join(", ")}]`);
  const n = x.length / dim;
  const k = opts.estimates ?? 1;
  const state = new Float32Array(x.length + k * n);
  state.set(x);
  const augmented: VelocityField = async (s, t) => {
    const { v, div } = await field(s.subarray(0, n * dim), t);
    if (div.length !== k * n) throw new Error(`divergence field returned ${div.length} values for ${n} samples x ${k} estimates`);
    const out = new Float32Array(s.length);
    out.set(v);
    out.set(div, n * dim);
    return out;
  };
  const r = await odeint(augmented, state, {
    solver: opts.solver ?? "dopri5",
    t0,
    t1,
    rtol: opts.rtol ?? 1e-5,
    atol: opts.atol ?? 1e-5,
    nfe: opts.nfe,
  });
  const acc = r.x.subarray(n * dim);
  const integral = new Float64Array(n);
  const stderr = k >= 2 ? new Float64Array(n) : undefined;
  for (let i = 0; i < n; i++) {
    let mean = 0;
    for (let j = 0; j < k; j++) mean += acc[j * n + i] / k;
    integral[i] = mean;
    if (stderr) {
      let ss = 0;
      for (let j = 0; j < k; j++) ss += (acc[j * n + i] - mean) ** 2;
      stderr[i] = Math.sqrt(ss / (k - 1) / k);
    }
  }
  return { x: r.x.slice(0, n * dim), integral, stderr, nfe: r.nfe };
}

/**
 * Integrate [x, L_1..L_K] from t = 1 to 0 with dx/dt = v and dL_k/dt = div_k v (K divergence
 * estimates per sample); log p1 = log p0(x0) + mean_k L_k(0).
 */
export async function logLikelihoodWith(
  field: FieldWithDivergence,
  x: Float32Array,
  opts: LogLikelihoodOptions,
): Promise<LogLikelihoodResult> {
  const dim = opts.sampleShape.reduce((a, b) => a * b, 1);
  const r = await integrateWithDivergence(field, x, 1, 0, opts);
  const logp0 = gaussianLogDensity(r.x, dim);
  const logp = logp0.map((v, i) => v + r.integral[i]);
  return { logp, logp0, deltaLogp: r.integral, x0: r.x, nfe: r.nfe, ...(r.stderr ? { stderr: r.stderr } : {}) };
}

/** Samples from one forward solve with each sample's log-density under the flow that made it, and the evaluations spent. */
export interface SampleWithLogDensityResult {
  /** The samples x1 (the end of the forward solve). */
  x: Float32Array;
  /** log p1(x1) per sample, in nats, under the same solve that made it. */
  logp: Float64Array;
  /** log N(x0; 0, I) of the noise each sample started from. */
  logp0: Float64Array;
  /** -int_0^1 div v dt per sample. */
  deltaLogp: Float64Array;
  /** Evaluations made (each returns the velocity and the divergence together). */
  nfe: number;
  /** Standard error of log p over the K divergence estimates (only when K >= 2). */
  stderr?: Float64Array;
}

/**
 * Samples and their log-density in one forward pass (facebookresearch/flow_matching issue #62):
 * integrate [x, L] from noise (t = 0) to data (t = 1) with dL/dt = div v, so
 * log p1(x1) = log N(x0; 0, I) - L(1). Every evaluation yields the velocity and the divergence
 * together: the samples cost the same evaluations as a plain solve with the same solver.
 */
export async function sampleWithLogDensityWith(
  field: FieldWithDivergence,
  x0: Float32Array,
  opts: LogLikelihoodOptions,
): Promise<SampleWithLogDensityResult> {
  const dim = opts.sampleShape.reduce((a, b) => a * b, 1);
  const r = await integrateWithDivergence(field, x0, 0, 1, opts);
  const logp0 = gaussianLogDensity(x0, dim);
  const deltaLogp = r.integral.map((v) => -v);
  const logp = logp0.map((v, i) => v + deltaLogp[i]);
  return { x: r.x, logp, logp0, deltaLogp, nfe: r.nfe, ...(r.stderr ? { stderr: r.stderr } : {}) };
}

/**
 * Velocity and divergence terms of a batch: for each tangent e, a jvp gives J e and the term
 * sum(e * J e) over each sample's axes. Returns [v, div] with div [1, n] (exact: the basis terms
 * summed into the trace) or [K, n] (one Hutchinson estimate per probe). Consumes x, t, y, the
 * tangents and p. Jitted on the engine and traced as is into ONNX (io/onnx.ts).
 */
export function velocityAndDivergence(
  model: VelocityModel,
  p: Params,
  x: Array,
  t: Array,
  y: Array,
  tangents: Array[],
  sampleRank: number,
  exact: boolean,
): [Array, Array] {
  const f = (xx: Array) => model.apply(tree.ref(p), xx, t.ref, y.ref);
  let v: Array | null = null;
  const terms: Array[] = [];
  const axes = Array.from({ length: sampleRank }, (_, i) => i + 1);
  for (const e of tangents) {
    const [out, jv] = jvp(f, [x.ref], [e.ref]) as [Array, Array];
    terms.push(np.sum(jv.mul(e), axes));
    if (v === null) v = out;
    else out.dispose();
  }
  tree.dispose(p);
  x.dispose();
  t.dispose();
  y.dispose();
  const div = exact ? np.stack([terms.reduce((acc, term) => acc.add(term))]) : np.stack(terms);
  return [v as Array, div];
}

/**
 * The tangents for velocityAndDivergence on n samples of `dim` values: the basis vectors (exact)
 * or the seeded Hutchinson probes, the same for every call with the same arguments.
 */
export function divergenceProbes(mode: DivergenceMode, n: number, dim: number): Float32Array[] {
  const probes: Float32Array[] = [];
  const count = mode === "exact" ? dim : mode.hutchinson;
  const rng = new Rng(mode === "exact" ? 0 : mode.seed);
  const gaussian = mode !== "exact" && mode.probe === "gaussian";
  for (let k = 0; k < count; k++) {
    let e: Float32Array;
    if (mode === "exact") {
      e = new Float32Array(n * dim);
      for (let i = 0; i < n; i++) e[i * dim + k] = 1;
    } else if (gaussian) {
      e = rng.normals(n * dim);
    } else {
      e = new Float32Array(n * dim);
      for (let i = 0; i < e.length; i++) e[i] = rng.uniform() < 0.5 ? -1 : 1;
    }
    probes.push(e);
  }
  return probes;
}

/**
 * The model's velocity with its divergence on the engine, one jitted call per evaluation:
 * exactly with one jvp per input dimension (basis tangents; returns K = 1 estimate), or with
 * Hutchinson's estimator eps^T J eps over fixed probes (returns K = probes estimates), the same
 * probes for the whole integration (FFJORD) so the solver sees one deterministic field.
 * The model must treat samples independently (GroupNorm is fine, BatchNorm is not): the trace is
 * taken over the whole batch's Jacobian and split per sample.
 */
export function modelDivergenceField(
  model: VelocityModel,
  host: HostParams,
  opts: { sampleShape: number[]; divergence: DivergenceMode; labels?: Int32Array },
): {
  field: FieldWithDivergence;
  /** K, the divergence estimates per sample the field returns (1 exact, probes for Hutchinson). */
  estimates: number;
  /** Frees the engine copy of the weights. */
  dispose: () => void;
} {
  const dim = opts.sampleShape.reduce((a, b) => a * b, 1);
  const mode = opts.divergence;
  if (mode !== "exact" && !(Number.isInteger(mode.hutchinson) && mode.hutchinson >= 1)) {
    throw new UserError(`the number of Hutchinson probes must be a positive integer, got ${mode.hutchinson}; pass e.g. --probes 4`);
  }
  const params = toEngine(host);
  let probes: Float32Array[] | null = null;
  const estimates = mode === "exact" ? 1 : mode.hutchinson;
  const compute = jit((p: Params, x: Array, t: Array, y: Array, tangents: Array[]) =>
    velocityAndDivergence(model, p, x, t, y, tangents, opts.sampleShape.length, mode === "exact"),
  );
  const field: FieldWithDivergence = async (x, t) => {
    const n = x.length / dim;
    if (!probes || probes[0].length !== x.length) probes = divergenceProbes(mode, n, dim);
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
    estimates,
    dispose() {
      tree.dispose(params);
      compute.dispose();
    },
  };
}

/** Options of logLikelihood: the ODE solve plus the divergence mode and class labels. */
export interface ModelLogLikelihoodOptions extends Omit<LogLikelihoodOptions, "estimates"> {
  /** "exact" (one jvp per dimension; for low-dimensional data) or Hutchinson probes (images). */
  divergence: DivergenceMode;
  /** Class labels for conditional models, one per sample. */
  labels?: Int32Array;
}

/**
 * log p1(x) in nats per sample under a model's flow: the backward ODE from data to noise with
 * the model's divergence (Dopri5, rtol = atol = 1e-5 by default). With Hutchinson probes the
 * result also carries each sample's standard error over the probes.
 */
export async function logLikelihood(
  model: VelocityModel,
  params: HostParams,
  x: Float32Array,
  opts: ModelLogLikelihoodOptions,
): Promise<LogLikelihoodResult> {
  const f = modelDivergenceField(model, params, { sampleShape: opts.sampleShape, divergence: opts.divergence, labels: opts.labels });
  try {
    return await logLikelihoodWith(f.field, x, { ...opts, estimates: f.estimates });
  } finally {
    f.dispose();
  }
}

/** sampleWithLogDensityWith for a model: its divergence exactly (low dimensions) or by Hutchinson probes. */
export async function sampleWithLogDensity(
  model: VelocityModel,
  params: HostParams,
  x0: Float32Array,
  opts: ModelLogLikelihoodOptions,
): Promise<SampleWithLogDensityResult> {
  const f = modelDivergenceField(model, params, { sampleShape: opts.sampleShape, divergence: opts.divergence, labels: opts.labels });
  try {
    return await sampleWithLogDensityWith(f.field, x0, { ...opts, estimates: f.estimates });
  } finally {
    f.dispose();
  }
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
