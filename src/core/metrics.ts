// Sample-quality metrics between two point clouds on the host: sliced Wasserstein-2 on fixed
// random directions, an unbiased multi-scale RBF MMD^2, k-NN precision/recall, and for datasets
// whose density is known exactly, the fraction of samples outside the support and the total
// variation of a histogram against the exact bin masses. SW2 and MMD average over the whole cloud
// and barely move when a model blurs sharp edges; the last three see blur and dropped modes. Each
// is compared against the same figure for fresh data (the noise floor), since finite samples never
// reach zero. Everything is deterministic: directions and subsamples come from fixed seeds.
import Flatbush from "flatbush";
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
export function slicedWasserstein2(
  a: Float32Array,
  b: Float32Array,
  dim: number,
  opts: { directions?: number; seed?: number } = {},
): number {
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
export function mmdRbf(
  a: Float32Array,
  b: Float32Array,
  dim: number,
  opts: { bandwidths?: number[]; maxSamples?: number; seed?: number } = {},
): number {
  rowCount(a, dim, "first sample", 2);
  rowCount(b, dim, "second sample", 2);
  const bandwidths = opts.bandwidths ?? [0.1, 0.2, 0.5, 1, 2, 5];
  if (bandwidths.length === 0 || bandwidths.some((h) => !(h > 0)))
    throw new RangeError(`bandwidths must be positive numbers, got [${bandwidths.join(", ")}]`);
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

/** Rows of a [n, 2] batch with both coordinates finite (a diverged sampler can emit NaN or Inf). */
function finiteRows(x: Float32Array): Uint32Array {
  const rows: number[] = [];
  for (let i = 0; i < x.length / 2; i++) if (Number.isFinite(x[2 * i]) && Number.isFinite(x[2 * i + 1])) rows.push(i);
  return Uint32Array.from(rows);
}

/** A static 2-D index of the given rows as points (Flatbush, a packed Hilbert R-tree); item id = position in `rows`. */
function pointIndex(x: Float32Array, rows: Uint32Array): Flatbush {
  const index = new Flatbush(rows.length);
  for (const i of rows) index.add(x[2 * i], x[2 * i + 1]);
  index.finish();
  return index;
}

/**
 * Squared distance from each point of a [n, 2] batch to its k-th nearest other point (ties and
 * duplicates count, so k coincident copies give 0). Non-finite points get NaN and are no one's
 * neighbour; finite points get NaN too when fewer than k other points are finite.
 */
export function knnRadiiSquared(x: Float32Array, k: number): Float64Array {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
  const n = rowCount(x, 2, "sample", k + 1);
  const out = new Float64Array(n).fill(NaN);
  const rows = finiteRows(x);
  if (rows.length <= k) return out;
  const index = pointIndex(x, rows);
  for (const i of rows) {
    const px = x[2 * i];
    const py = x[2 * i + 1];
    // The k + 1 nearest include the point itself (distance 0), so the last is the k-th other one.
    const found = index.neighbors(px, py, k + 1);
    const j = rows[found[k]];
    out[i] = (x[2 * j] - px) ** 2 + (x[2 * j + 1] - py) ** 2;
  }
  return out;
}

/**
 * Fraction of the `query` points that lie in the union of the balls centred on `centres` with the
 * given squared radii (boundary included). Non-finite queries and NaN radii are never inside.
 */
function fractionInBalls(query: Float32Array, centres: Float32Array, radii2: Float64Array): number {
  const nq = query.length / 2;
  const balls = finiteRows(centres).filter((i) => Number.isFinite(radii2[i]));
  if (balls.length === 0 || nq === 0) return 0;
  const index = new Flatbush(balls.length);
  for (const i of balls) {
    // A hair wider than the radius so rounding in sqrt never drops a point on the boundary; the
    // exact test below decides.
    const r = Math.sqrt(radii2[i]) * (1 + 1e-9) + 1e-300;
    index.add(centres[2 * i] - r, centres[2 * i + 1] - r, centres[2 * i] + r, centres[2 * i + 1] + r);
  }
  index.finish();
  let inside = 0;
  for (let q = 0; q < nq; q++) {
    const qx = query[2 * q];
    const qy = query[2 * q + 1];
    if (!Number.isFinite(qx) || !Number.isFinite(qy)) continue;
    const hit = index.collides(qx, qy, qx, qy, (id) => {
      const c = balls[id];
      return (centres[2 * c] - qx) ** 2 + (centres[2 * c + 1] - qy) ** 2 <= radii2[c];
    });
    if (hit) inside++;
  }
  return inside / nq;
}

/**
 * Improved precision and recall (Kynkäänniemi et al. 2019) of 2-D point sets. Each real point
 * carries a ball reaching its k-th nearest real neighbour; precision is the fraction of generated
 * points inside at least one real ball (are the samples realistic?). Recall swaps the roles: the
 * fraction of real points inside a ball of the generated set (is all of the data covered?). Blur
 * lowers precision, dropped modes lower recall. k = 3 is the paper's default. Exact: balls and
 * neighbours come from a spatial index, never an n x n matrix, so n = 10,000 takes well under a
 * second. Non-finite generated points count as outside and carry no ball.
 */
export function precisionRecall(
  real: Float32Array,
  generated: Float32Array,
  opts: { k?: number } = {},
): { precision: number; recall: number } {
  const k = opts.k ?? 3;
  return {
    precision: fractionInBalls(generated, real, knnRadiiSquared(real, k)),
    recall: fractionInBalls(real, generated, knnRadiiSquared(generated, k)),
  };
}

/** A 2-D distribution whose density is known exactly, for the support and histogram metrics. */
export interface KnownDensity2d {
  /** True when (x, y) lies in the support (as `support` describes it). */
  inSupport(x: number, y: number): boolean;
  /** Exact probability mass of the box [x0, x1] x [y0, y1]. */
  mass(x0: number, x1: number, y0: number, y1: number): number;
  /** Histogram box [xmin, xmax, ymin, ymax] and bins per axis; mass outside the box is one more bin. */
  box: readonly [number, number, number, number];
  bins: number;
  /** What counts as the support, in words for reports. */
  support: string;
}

/** Fraction of the points of a [n, 2] batch outside the density's support (non-finite points are outside). */
export function outsideFraction(x: Float32Array, density: KnownDensity2d): number {
  const n = rowCount(x, 2, "sample", 1);
  let outside = 0;
  for (let i = 0; i < n; i++) {
    const px = x[2 * i];
    const py = x[2 * i + 1];
    if (!(Number.isFinite(px) && Number.isFinite(py) && density.inSupport(px, py))) outside++;
  }
  return outside / n;
}

/**
 * Total variation (half the L1 distance, in [0, 1]) between the histogram of a [n, 2] batch and
 * the exact density integrated over the same bins: density.bins x density.bins equal cells over
 * density.box, plus one cell for everything outside the box (non-finite points included). Even
 * exact samples score about (1/2) sum_b sqrt(2 p_b / (pi n)) > 0, hence the noise floor.
 */
export function histogramTV(x: Float32Array, density: KnownDensity2d): number {
  const n = rowCount(x, 2, "sample", 1);
  const [x0, x1, y0, y1] = density.box;
  const B = density.bins;
  if (!Number.isInteger(B) || B < 1) throw new RangeError(`bins must be a positive integer, got ${B}`);
  if (!(x1 > x0 && y1 > y0)) throw new RangeError(`histogram box [${density.box.join(", ")}] is empty`);
  const counts = new Float64Array(B * B);
  let outsideBox = 0;
  for (let i = 0; i < n; i++) {
    const px = x[2 * i];
    const py = x[2 * i + 1];
    // The comparisons are false for NaN, so non-finite points land in the outside cell.
    if (px >= x0 && px < x1 && py >= y0 && py < y1) {
      const bx = Math.min(B - 1, Math.floor(((px - x0) / (x1 - x0)) * B));
      const by = Math.min(B - 1, Math.floor(((py - y0) / (y1 - y0)) * B));
      counts[by * B + bx]++;
    } else {
      outsideBox++;
    }
  }
  let tv = 0;
  let massInBox = 0;
  for (let by = 0; by < B; by++) {
    for (let bx = 0; bx < B; bx++) {
      const m = density.mass(
        x0 + ((x1 - x0) * bx) / B,
        x0 + ((x1 - x0) * (bx + 1)) / B,
        y0 + ((y1 - y0) * by) / B,
        y0 + ((y1 - y0) * (by + 1)) / B,
      );
      massInBox += m;
      tv += Math.abs(counts[by * B + bx] / n - m);
    }
  }
  tv += Math.abs(outsideBox / n - Math.max(0, 1 - massInBox));
  return tv / 2;
}

/** Sample quality of a generated set against fresh data, each figure with its noise floor (see qualityReport). */
export interface QualityReport {
  /** Sliced W2 and MMD^2 between the generated set and a fresh data set of n points. */
  sw2: number;
  mmd: number;
  /** The same figures between two fresh data sets of n points: what a perfect model would score. */
  sw2Floor: number;
  mmdFloor: number;
  /** k-NN precision/recall against the fresh set, and between the two fresh sets (2-D only). */
  precisionRecall?: { k: number; precision: number; recall: number; precisionFloor: number; recallFloor: number };
  /**
   * Datasets with an exact density: fraction of samples outside the support and histogram TV to
   * the exact bin masses; the floors are the same figures for a fresh data set of n points.
   */
  density?: { support: string; histogram: string; outside: number; outsideFloor: number; tv: number; tvFloor: number };
}

/**
 * Compares `generated` ([m, dim]) with fresh data of n points, and a second fresh set with the
 * first for the noise floor. `sampleFresh(n, seed)` must be deterministic in its seed; the seeds
 * are fixed, so the floor depends only on the dataset and n. In 2-D it adds k-NN precision/recall
 * (k = 3 unless given; left out when a set has k points or fewer), and with an exact `density`
 * the outside fraction and histogram TV.
 */
export function qualityReport(
  generated: Float32Array,
  sampleFresh: (n: number, seed: number) => Float32Array,
  dim: number,
  n: number,
  opts: { density?: KnownDensity2d; k?: number } = {},
): QualityReport {
  const m = rowCount(generated, dim, "generated sample", 1);
  const fresh = sampleFresh(n, FRESH_SEED);
  const fresh2 = sampleFresh(n, FLOOR_SEED);
  const report: QualityReport = {
    sw2: slicedWasserstein2(generated, fresh, dim),
    mmd: mmdRbf(generated, fresh, dim),
    sw2Floor: slicedWasserstein2(fresh2, fresh, dim),
    mmdFloor: mmdRbf(fresh2, fresh, dim),
  };
  const k = opts.k ?? 3;
  // k-NN balls need k other points in each set.
  if (dim === 2 && m > k && n > k) {
    const model = precisionRecall(fresh, generated, { k });
    const floor = precisionRecall(fresh, fresh2, { k });
    report.precisionRecall = { k, ...model, precisionFloor: floor.precision, recallFloor: floor.recall };
  }
  const d = opts.density;
  if (dim === 2 && d) {
    const [x0, x1, y0, y1] = d.box;
    report.density = {
      support: d.support,
      histogram: `${d.bins}x${d.bins} bins over [${x0}, ${x1}] x [${y0}, ${y1}] plus one bin for the rest of the plane`,
      outside: outsideFraction(generated, d),
      outsideFloor: outsideFraction(fresh, d),
      tv: histogramTV(generated, d),
      tvFloor: histogramTV(fresh, d),
    };
  }
  return report;
}

/** Three significant digits in plain notation, e.g. 0.0832, 0.00012, 1.25. */
function significant(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0";
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
  return x.toFixed(Math.min(digits, 20));
}

/** A fraction as a percentage: one decimal, two below 1% so a few stray samples do not read 0.0%. */
function percent(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  return `${(100 * x).toFixed(x > 0 && x < 0.01 ? 2 : 1)}%`;
}

/** The report as labelled cells (value and floor), most telling first; the quality line and the compare table share it. */
export function qualityCells(r: QualityReport): { label: string; value: string; floor: string }[] {
  const cells: { label: string; value: string; floor: string }[] = [];
  if (r.density) {
    cells.push({ label: "outside", value: percent(r.density.outside), floor: percent(r.density.outsideFloor) });
    cells.push({ label: "TV", value: significant(r.density.tv), floor: significant(r.density.tvFloor) });
  }
  if (r.precisionRecall) {
    const pr = r.precisionRecall;
    cells.push({ label: `precision (k=${pr.k})`, value: pr.precision.toFixed(3), floor: pr.precisionFloor.toFixed(3) });
    cells.push({ label: `recall (k=${pr.k})`, value: pr.recall.toFixed(3), floor: pr.recallFloor.toFixed(3) });
  }
  cells.push({ label: "sliced-W2", value: significant(r.sw2), floor: significant(r.sw2Floor) });
  cells.push({ label: "MMD", value: significant(r.mmd), floor: significant(r.mmdFloor) });
  return cells;
}

/**
 * One line, each figure with its floor (the same figure for fresh data), e.g. "outside 11.1%
 * (floor 0.0%)  TV 0.201 (floor 0.178)  precision (k=3) 0.930 (floor 0.990)  ...  MMD 0.00012 (floor 0.00001)".
 */
export function formatQuality(r: QualityReport): string {
  return qualityCells(r)
    .map((c) => `${c.label} ${c.value} (floor ${c.floor})`)
    .join("  ");
}

/** Mean [d] and covariance [d, d] (divisor n - 1) of n feature rows ([n, d] flattened), in float64. */
export function meanCovariance(x: Float32Array, d: number): { mean: Float64Array; cov: Float64Array } {
  const n = x.length / d;
  if (!(n >= 2)) throw new RangeError(`meanCovariance: needs at least 2 rows, got ${n}`);
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x[i * d + j] / n;
  const cov = new Float64Array(d * d);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) row[j] = x[i * d + j] - mean[j];
    for (let a = 0; a < d; a++) for (let b = a; b < d; b++) cov[a * d + b] += (row[a] * row[b]) / (n - 1);
  }
  for (let a = 0; a < d; a++) for (let b = 0; b < a; b++) cov[a * d + b] = cov[b * d + a];
  return { mean, cov };
}

/** Eigenvalues of a symmetric d x d matrix by cyclic Jacobi rotations (small d: feature sizes of 16-256). */
export function symmetricEigenvalues(m: Float64Array, d: number): Float64Array {
  const a = Float64Array.from(m);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < d; p++) for (let q = p + 1; q < d; q++) off += a[p * d + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < d; p++) {
      for (let q = p + 1; q < d; q++) {
        const apq = a[p * d + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1),
          s = t * c;
        for (let k = 0; k < d; k++) {
          const akp = a[k * d + p],
            akq = a[k * d + q];
          a[k * d + p] = c * akp - s * akq;
          a[k * d + q] = s * akp + c * akq;
        }
        for (let k = 0; k < d; k++) {
          const apk = a[p * d + k],
            aqk = a[q * d + k];
          a[p * d + k] = c * apk - s * aqk;
          a[q * d + k] = s * apk + c * aqk;
        }
      }
    }
  }
  return Float64Array.from({ length: d }, (_, i) => a[i * d + i]);
}

/**
 * Fréchet distance between Gaussians N(mu1, S1) and N(mu2, S2):
 * |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). The last trace is the sum of square
 * roots of the eigenvalues of S1^(1/2) S2 S1^(1/2) (symmetric, same spectrum as S1 S2).
 */
export function frechetDistance(mu1: Float64Array, s1: Float64Array, mu2: Float64Array, s2: Float64Array): number {
  const d = mu1.length;
  let dist = 0;
  for (let i = 0; i < d; i++) dist += (mu1[i] - mu2[i]) ** 2 + s1[i * d + i] + s2[i * d + i];
  // S1^(1/2) from S1's eigen-decomposition would need vectors; Jacobi on S1 with vectors is the same
  // loop, so use the symmetric product B = L^T S2 L with S1 = L L^T (Cholesky, jittered if singular).
  const L = cholesky(s1, d);
  const tmp = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let j = 0; j < d; j++) {
      let v = 0;
      for (let k = 0; k < d; k++) v += s2[i * d + k] * L[k * d + j];
      tmp[i * d + j] = v;
    }
  const b = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let j = 0; j < d; j++) {
      let v = 0;
      for (let k = 0; k < d; k++) v += L[k * d + i] * tmp[k * d + j];
      b[i * d + j] = v;
    }
  let trSqrt = 0;
  for (const e of symmetricEigenvalues(b, d)) trSqrt += Math.sqrt(Math.max(0, e));
  return Math.max(0, dist - 2 * trSqrt);
}

/** Lower-triangular L with L L^T = S (S symmetric PSD; a tiny diagonal jitter keeps singular S usable). */
function cholesky(s: Float64Array, d: number): Float64Array {
  let scale = 0;
  for (let i = 0; i < d; i++) scale = Math.max(scale, s[i * d + i]);
  const jitter = 1e-12 * (scale || 1);
  const L = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let v = s[i * d + j] + (i === j ? jitter : 0);
      for (let k = 0; k < j; k++) v -= L[i * d + k] * L[j * d + k];
      L[i * d + j] = i === j ? Math.sqrt(Math.max(v, 0)) : L[j * d + j] > 0 ? v / L[j * d + j] : 0;
    }
  }
  return L;
}

/** Fréchet distance between the Gaussians fitted to two feature sets ([n, d] flattened each). */
export function frechetDistanceOf(a: Float32Array, b: Float32Array, d: number): number {
  const x = meanCovariance(a, d),
    y = meanCovariance(b, d);
  return frechetDistance(x.mean, x.cov, y.mean, y.cov);
}

/** Fraction of rows of `logits` ([n, k] flattened) whose largest entry is at the row's label. */
export function classAccuracy(logits: Float32Array, labels: Int32Array): number {
  const n = labels.length,
    k = logits.length / n;
  let right = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < k; c++) if (logits[i * k + c] > logits[i * k + best]) best = c;
    if (best === labels[i]) right++;
  }
  return right / n;
}
