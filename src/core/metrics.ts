// Sample-quality metrics between two point clouds on the host: sliced Wasserstein-2 on fixed
// random directions, and an unbiased multi-scale RBF MMD^2. Both are compared against the same
// figure between two fresh data sets (the noise floor), since finite samples never reach zero.
// Everything is deterministic: directions and subsamples come from fixed seeds.
import { Rng } from "./rng.js";

const DEFAULT_DIRECTIONS_SEED = 20240601;
const DEFAULT_SUBSAMPLE_SEED = 7919;
/** Fresh-data seeds for qualityReport; fixed so the floor depends only on the dataset and n. */
const FRESH_SEED = 1001;
const FLOOR_SEED = 2002;

/** Number of rows of a [n, dim] batch; throws on shapes that cannot be one. */
function rowCount(x: Float32Array, dim: number, what: string, minRows: number): number {
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`dim must be a positive integer, got ${dim}`);
  if (x.length % dim !== 0) throw new RangeError(`${what} has ${x.length} values, not a multiple of dim ${dim}`);
  const n = x.length / dim;
  if (n < minRows) throw new RangeError(`${what} needs at least ${minRows} point(s), got ${n}`);
  return n;
}

/**
 * Squared W2 between the empirical distributions of two sorted 1-D samples: the integral over
 * u in (0, 1) of (Qa(u) - Qb(u))^2 with the step quantile functions. For equal sizes this is the
 * mean squared difference of the sorted values; for different sizes the steps are merged exactly.
 */
function w2SquaredSorted(a: Float64Array, b: Float64Array): number {
  const na = a.length;
  const nb = b.length;
  let total = 0;
  if (na === nb) {
    for (let i = 0; i < na; i++) total += (a[i] - b[i]) ** 2;
    return total / na;
  }
  // Walk both step functions; quantile breakpoints (i+1)/na and (j+1)/nb compared in integers.
  let i = 0;
  let j = 0;
  let u = 0;
  while (i < na && j < nb) {
    const endA = (i + 1) * nb;
    const endB = (j + 1) * na;
    const end = Math.min(endA, endB);
    total += (end - u) * (a[i] - b[j]) ** 2;
    u = end;
    if (endA === end) i++;
    if (endB === end) j++;
  }
  return total / (na * nb);
}

/**
 * Sliced Wasserstein-2 distance: sqrt(mean over `directions` fixed random unit directions of the
 * squared 1-D W2 between the projections). The 1-D W2 is exact for the empirical distributions
 * (sorted samples; different sizes merge their quantile steps). Same seed, same directions, so
 * figures are comparable across runs. Non-finite points make the result NaN.
 * For a shift by d of the same distribution in 2-D, SW2 = |d| sqrt(E cos^2) = |d| / sqrt(2).
 */
export function slicedWasserstein2(a: Float32Array, b: Float32Array, dim: number, opts: { directions?: number; seed?: number } = {}): number {
  const na = rowCount(a, dim, "first sample", 1);
  const nb = rowCount(b, dim, "second sample", 1);
  const directions = opts.directions ?? 128;
  if (!Number.isInteger(directions) || directions < 1) throw new RangeError(`directions must be a positive integer, got ${directions}`);
  const rng = new Rng(opts.seed ?? DEFAULT_DIRECTIONS_SEED);
  const dir = new Float64Array(dim);
  const pa = new Float64Array(na);
  const pb = new Float64Array(nb);
  const project = (x: Float32Array, n: number, out: Float64Array) => {
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += x[i * dim + d] * dir[d];
      out[i] = s;
    }
    out.sort();
  };
  let total = 0;
  for (let k = 0; k < directions; k++) {
    // Normalised Gaussian vectors are uniform on the sphere.
    let norm = 0;
    do {
      norm = 0;
      for (let d = 0; d < dim; d++) {
        dir[d] = rng.normal();
        norm += dir[d] * dir[d];
      }
    } while (norm === 0);
    norm = Math.sqrt(norm);
    for (let d = 0; d < dim; d++) dir[d] /= norm;
    project(a, na, pa);
    project(b, nb, pb);
    total += w2SquaredSorted(pa, pb);
  }
  return Math.sqrt(total / directions);
}

/** Up to `max` rows of x, drawn without replacement by a seeded partial shuffle. */
function subsample(x: Float32Array, dim: number, max: number, seed: number): Float32Array {
  const n = x.length / dim;
  if (n <= max) return x;
  // Random rather than strided rows: datasets that interleave classes (moons, circles, spirals
  // put one class on even rows) would otherwise lose a class to a stride of 2.
  const rng = new Rng(seed);
  const index = new Uint32Array(n);
  for (let i = 0; i < n; i++) index[i] = i;
  const out = new Float32Array(max * dim);
  for (let i = 0; i < max; i++) {
    const j = i + rng.int(n - i);
    const pick = index[j];
    index[j] = index[i];
    index[i] = pick;
    out.set(x.subarray(pick * dim, (pick + 1) * dim), i * dim);
  }
  return out;
}

/**
 * Unbiased MMD^2 estimate with the kernel k(x, y) = sum over bandwidths h of exp(-|x-y|^2 / (2 h^2)).
 * The default bandwidths [0.1, 0.2, 0.5, 1, 2, 5] are fixed (not the median heuristic) so figures
 * compare across runs; they suit data of unit-ish scale such as the toy datasets. Each set is
 * subsampled to `maxSamples` rows (default 2000) by a seeded draw, since the cost is quadratic.
 * Identical distributions give ~0 (slightly negative is possible: the estimate is unbiased).
 */
export function mmdRbf(a: Float32Array, b: Float32Array, dim: number, opts: { bandwidths?: number[]; maxSamples?: number; seed?: number } = {}): number {
  rowCount(a, dim, "first sample", 2);
  rowCount(b, dim, "second sample", 2);
  const bandwidths = opts.bandwidths ?? [0.1, 0.2, 0.5, 1, 2, 5];
  if (bandwidths.length === 0 || bandwidths.some((h) => !(h > 0))) throw new RangeError(`bandwidths must be positive numbers, got [${bandwidths.join(", ")}]`);
  const maxSamples = opts.maxSamples ?? 2000;
  if (!Number.isInteger(maxSamples) || maxSamples < 2) throw new RangeError(`maxSamples must be an integer >= 2, got ${maxSamples}`);
  const seed = opts.seed ?? DEFAULT_SUBSAMPLE_SEED;
  const x = subsample(a, dim, maxSamples, seed);
  const y = subsample(b, dim, maxSamples, seed + 1);
  const nx = x.length / dim;
  const ny = y.length / dim;
  // Widest kernel first, so the loop can stop at the first term too small to count.
  const gammas = Float64Array.from(bandwidths, (h) => 1 / (2 * h * h)).sort();
  const kernel = (p: Float32Array, i: number, q: Float32Array, j: number) => {
    let d2 = 0;
    for (let d = 0; d < dim; d++) {
      const diff = p[i * dim + d] - q[j * dim + d];
      d2 += diff * diff;
    }
    let s = 0;
    for (let g = 0; g < gammas.length; g++) {
      const exponent = gammas[g] * d2;
      // exp(-40) < 5e-18: below double precision next to the widest kernel's term, which the
      // sum always holds first. Skipping these halves the cost on multi-scale kernels.
      if (exponent > 40) break;
      s += Math.exp(-exponent);
    }
    return s;
  };
  let kxx = 0;
  for (let i = 0; i < nx; i++) for (let j = i + 1; j < nx; j++) kxx += kernel(x, i, x, j);
  let kyy = 0;
  for (let i = 0; i < ny; i++) for (let j = i + 1; j < ny; j++) kyy += kernel(y, i, y, j);
  let kxy = 0;
  for (let i = 0; i < nx; i++) for (let j = 0; j < ny; j++) kxy += kernel(x, i, y, j);
  return (2 * kxx) / (nx * (nx - 1)) + (2 * kyy) / (ny * (ny - 1)) - (2 * kxy) / (nx * ny);
}

export interface QualityReport {
  /** Sliced W2 and MMD^2 between the generated set and a fresh data set of n points. */
  sw2: number;
  mmd: number;
  /** The same figures between two fresh data sets of n points: what a perfect model would score. */
  sw2Floor: number;
  mmdFloor: number;
}

/**
 * Compares `generated` ([m, dim]) with fresh data of n points, and a second fresh set with the
 * first for the noise floor. `sampleFresh(n, seed)` must be deterministic in its seed; the seeds
 * are fixed, so the floor depends only on the dataset and n.
 */
export function qualityReport(generated: Float32Array, sampleFresh: (n: number, seed: number) => Float32Array, dim: number, n: number): QualityReport {
  const fresh = sampleFresh(n, FRESH_SEED);
  const fresh2 = sampleFresh(n, FLOOR_SEED);
  return {
    sw2: slicedWasserstein2(generated, fresh, dim),
    mmd: mmdRbf(generated, fresh, dim),
    sw2Floor: slicedWasserstein2(fresh2, fresh, dim),
    mmdFloor: mmdRbf(fresh2, fresh, dim),
  };
}

/** Three significant digits in plain notation, e.g. 0.0832, 0.00012, 1.25. */
function significant(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0";
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
  return x.toFixed(Math.min(digits, 20));
}

/** One line, e.g. "sliced-W2 0.0832 (noise floor 0.0413, 2.01x)  MMD 0.00121 (floor 0.000302)". */
export function formatQuality(r: QualityReport): string {
  const ratio = r.sw2Floor > 0 ? `, ${(r.sw2 / r.sw2Floor).toFixed(2)}x` : "";
  return `sliced-W2 ${significant(r.sw2)} (noise floor ${significant(r.sw2Floor)}${ratio})  MMD ${significant(r.mmd)} (floor ${significant(r.mmdFloor)})`;
}
