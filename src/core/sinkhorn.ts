// Entropic optimal transport between two equal-weight point clouds (Cuturi 2013), as torchcfm's
// OTPlanSampler with method "sinkhorn": the plan minimising <P, C> - reg H(P) under squared
// Euclidean cost, and minibatch pairs drawn from it. Large reg tends to independent pairing, small
// reg to the exact assignment (src/core/coupling.ts).
import { UserError } from "./errors.js";
import type { Rng } from "./rng.js";

/** Settings of the Sinkhorn iterations (sinkhornPlan, sinkhornCouple): the regularisation and when to stop. */
export interface SinkhornOptions {
  /** Entropic regularisation epsilon (> 0), in units of squared distance. */
  reg: number;
  /** Stop when the row marginals are met to this L2 error (default 1e-9, POT's stopThr). */
  tol?: number;
  /** Give up after this many iterations (default 1000, POT's numItermax); the plan is still returned. */
  maxIter?: number;
}

/** Squared Euclidean distances [n, m] between the rows of a and b. */
export function squaredDistances(a: Float32Array, b: Float32Array, dim: number): Float64Array {
  const n = a.length / dim;
  const m = b.length / dim;
  const c = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let d = 0;
      for (let k = 0; k < dim; k++) {
        const diff = a[i * dim + k] - b[j * dim + k];
        d += diff * diff;
      }
      c[i * m + j] = d;
    }
  }
  return c;
}

function logSumExp(values: Float64Array): number {
  let max = -Infinity;
  for (const v of values) if (v > max) max = v;
  if (max === -Infinity) return max;
  let s = 0;
  for (const v of values) s += Math.exp(v - max);
  return max + Math.log(s);
}

/**
 * The entropic plan P [n, m] (row-major, entries sum to 1) with uniform marginals 1/n and 1/m for
 * the cost matrix `cost`: P = diag(u) K diag(v), K = exp(-C / reg), by alternating Sinkhorn scaling.
 * Also returns the iterations used and the final row-marginal error (L2 norm, checked every 10
 * iterations, as POT does). If the scalings overflow (a reg far below the costs), it starts over in
 * the log domain, which cannot.
 */
export function sinkhornPlan(
  cost: Float64Array,
  n: number,
  m: number,
  opts: SinkhornOptions,
): { plan: Float64Array; iterations: number; error: number } {
  const { reg } = opts;
  if (!(reg > 0 && Number.isFinite(reg))) throw new UserError(`--reg must be a positive number (the entropic regularisation), got ${reg}`);
  if (cost.length !== n * m) throw new Error(`cost has ${cost.length} entries for a ${n} x ${m} plan`);
  return (
    sinkhornScaling(cost, n, m, reg, opts.tol ?? 1e-9, opts.maxIter ?? 1000) ??
    sinkhornLog(cost, n, m, reg, opts.tol ?? 1e-9, opts.maxIter ?? 1000)
  );
}

/** Kernel-scaling Sinkhorn; null when a scaling stops being finite. */
function sinkhornScaling(
  cost: Float64Array,
  n: number,
  m: number,
  reg: number,
  tol: number,
  maxIter: number,
): { plan: Float64Array; iterations: number; error: number } | null {
  // Subtracting each row's and then each column's smallest cost rescales K's rows and columns
  // (absorbed by u and v) and leaves a 1 in every row and column, so no sum starts at zero.
  const rowMin = new Float64Array(n).fill(Infinity);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) rowMin[i] = Math.min(rowMin[i], cost[i * m + j]);
  const colMin = new Float64Array(m).fill(Infinity);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) colMin[j] = Math.min(colMin[j], cost[i * m + j] - rowMin[i]);
  const K = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) K[i * m + j] = Math.exp(-(cost[i * m + j] - rowMin[i] - colMin[j]) / reg);
  const u = new Float64Array(n).fill(1);
  const v = new Float64Array(m).fill(1);
  const Ktu = new Float64Array(m);
  let error = Infinity;
  let it = 0;
  while (it < maxIter) {
    it++;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < m; j++) s += K[i * m + j] * v[j];
      u[i] = 1 / (n * s);
    }
    Ktu.fill(0);
    for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) Ktu[j] += K[i * m + j] * u[i];
    for (let j = 0; j < m; j++) v[j] = 1 / (m * Ktu[j]);
    if (it % 10 === 0 || it === maxIter) {
      // After the v update the column marginals are exact; the row marginals measure convergence.
      error = 0;
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < m; j++) s += K[i * m + j] * v[j];
        error += (u[i] * s - 1 / n) ** 2;
      }
      error = Math.sqrt(error);
      if (!Number.isFinite(error)) return null;
      if (error <= tol) break;
    }
  }
  const plan = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) plan[i * m + j] = u[i] * K[i * m + j] * v[j];
  if (!plan.every(Number.isFinite)) return null;
  return { plan, iterations: it, error };
}

/** Log-domain Sinkhorn on the potentials f, g: slower (an exp per entry per iteration) but never overflows. */
function sinkhornLog(
  cost: Float64Array,
  n: number,
  m: number,
  reg: number,
  tol: number,
  maxIter: number,
): { plan: Float64Array; iterations: number; error: number } {
  const logA = -Math.log(n);
  const logB = -Math.log(m);
  const f = new Float64Array(n);
  const g = new Float64Array(m);
  const row = new Float64Array(m);
  const col = new Float64Array(n);
  let error = Infinity;
  let it = 0;
  while (it < maxIter) {
    it++;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) row[j] = (g[j] - cost[i * m + j]) / reg;
      f[i] = reg * (logA - logSumExp(row));
    }
    for (let j = 0; j < m; j++) {
      for (let i = 0; i < n; i++) col[i] = (f[i] - cost[i * m + j]) / reg;
      g[j] = reg * (logB - logSumExp(col));
    }
    if (it % 10 === 0 || it === maxIter) {
      error = 0;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < m; j++) row[j] = (f[i] + g[j] - cost[i * m + j]) / reg;
        error += (Math.exp(logSumExp(row)) - 1 / n) ** 2;
      }
      error = Math.sqrt(error);
      if (error <= tol) break;
    }
  }
  const plan = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) plan[i * m + j] = Math.exp((f[i] + g[j] - cost[i * m + j]) / reg);
  return { plan, iterations: it, error };
}

/**
 * Minibatch entropic-OT coupling as torchcfm samples it: n index pairs (i, j) drawn with
 * replacement from the plan, returning x0[i] and x1[j] row by row (labels follow their x1 rows).
 */
export function sinkhornCouple(
  x0: Float32Array,
  x1: Float32Array,
  dim: number,
  rng: Rng,
  opts: SinkhornOptions,
  labels?: Int32Array,
): { x0: Float32Array; x1: Float32Array; labels?: Int32Array } {
  const n = x0.length / dim;
  const m = x1.length / dim;
  const { plan, error, iterations } = sinkhornPlan(squaredDistances(x0, x1, dim), n, m, opts);
  // A plan far from its marginals would drop or repeat points wholesale: refuse rather than train on it.
  if (!(error <= 1e-4)) {
    throw new UserError(
      `Sinkhorn did not converge at --reg ${opts.reg} (marginal error ${error.toExponential(1)} after ${iterations} iterations); ` +
        `raise --reg (squared-distance units, e.g. 0.1) or use --coupling ot`,
    );
  }
  const cdf = new Float64Array(plan.length);
  let acc = 0;
  for (let k = 0; k < plan.length; k++) cdf[k] = acc += plan[k];
  const out0 = new Float32Array(x0.length);
  const out1 = new Float32Array(n * dim);
  const outLabels = labels ? new Int32Array(n) : undefined;
  for (let r = 0; r < n; r++) {
    const u = rng.uniform() * acc;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    const i = Math.floor(lo / m);
    const j = lo % m;
    out0.set(x0.subarray(i * dim, (i + 1) * dim), r * dim);
    out1.set(x1.subarray(j * dim, (j + 1) * dim), r * dim);
    if (outLabels && labels) outLabels[r] = labels[j];
  }
  return { x0: out0, x1: out1, labels: outLabels };
}
