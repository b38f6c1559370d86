// Sample-quality metrics between two point clouds on the host: sliced Wasserstein-2 on fixed
// random directions, and an unbiased multi-scale RBF MMD^2. Both are compared against the same
// figure between two fresh data sets (the noise floor), since finite samples never reach zero.
import { Rng } from "./rng.js";

/** Quantile of sorted values at probability p (linear interpolation). */
function quantile(sorted: Float64Array, p: number): number {
  const pos = p * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * Sliced Wasserstein-2: sqrt of the mean over `directions` fixed unit directions of the squared
 * 1-D W2 distance between the projections (quantile matching; different sizes are interpolated).
 */
export function slicedWasserstein2(a: Float32Array, b: Float32Array, dim: number, opts: { directions?: number; seed?: number } = {}): number {
  const directions = opts.directions ?? 128;
  const rng = new Rng(opts.seed ?? 20240601);
  const na = a.length / dim;
  const nb = b.length / dim;
  const m = Math.max(na, nb);
  let total = 0;
  const pa = new Float64Array(na);
  const pb = new Float64Array(nb);
  for (let k = 0; k < directions; k++) {
    const dir = new Float64Array(dim);
    let norm = 0;
    for (let d = 0; d < dim; d++) {
      dir[d] = rng.normal();
      norm += dir[d] * dir[d];
    }
    norm = Math.sqrt(norm);
    for (let d = 0; d < dim; d++) dir[d] /= norm;
    for (let i = 0; i < na; i++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += a[i * dim + d] * dir[d];
      pa[i] = s;
    }
    for (let i = 0; i < nb; i++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += b[i * dim + d] * dir[d];
      pb[i] = s;
    }
    pa.sort();
    pb.sort();
    let w = 0;
    if (na === nb) {
      for (let i = 0; i < na; i++) w += (pa[i] - pb[i]) ** 2;
      w /= na;
    } else {
      for (let i = 0; i < m; i++) {
        const p = (i + 0.5) / m;
        w += (quantile(pa, p) - quantile(pb, p)) ** 2;
      }
      w /= m;
    }
    total += w;
  }
  return Math.sqrt(total / directions);
}

/** Unbiased MMD^2 with a sum of RBF kernels exp(-|x-y|^2 / (2 h^2)) over bandwidths h. */
export function mmdRbf(a: Float32Array, b: Float32Array, dim: number, opts: { bandwidths?: number[]; maxSamples?: number } = {}): number {
  const hs = opts.bandwidths ?? [0.1, 0.2, 0.5, 1, 2, 5];
  const max = opts.maxSamples ?? 2000;
  const take = (x: Float32Array) => {
    const n = x.length / dim;
    if (n <= max) return x;
    // Deterministic evenly spaced subsample.
    const out = new Float32Array(max * dim);
    for (let i = 0; i < max; i++) {
      const j = Math.floor((i * n) / max);
      out.set(x.subarray(j * dim, (j + 1) * dim), i * dim);
    }
    return out;
  };
  const x = take(a);
  const y = take(b);
  const nx = x.length / dim;
  const ny = y.length / dim;
  const gammas = hs.map((h) => 1 / (2 * h * h));
  const k = (p: Float32Array, i: number, q: Float32Array, j: number) => {
    let d2 = 0;
    for (let d = 0; d < dim; d++) d2 += (p[i * dim + d] - q[j * dim + d]) ** 2;
    let s = 0;
    for (const g of gammas) s += Math.exp(-g * d2);
    return s;
  };
  let kxx = 0;
  for (let i = 0; i < nx; i++) for (let j = i + 1; j < nx; j++) kxx += k(x, i, x, j);
  let kyy = 0;
  for (let i = 0; i < ny; i++) for (let j = i + 1; j < ny; j++) kyy += k(y, i, y, j);
  let kxy = 0;
  for (let i = 0; i < nx; i++) for (let j = 0; j < ny; j++) kxy += k(x, i, y, j);
  return (2 * kxx) / (nx * (nx - 1)) + (2 * kyy) / (ny * (ny - 1)) - (2 * kxy) / (nx * ny);
}

export interface QualityReport {
  sw2: number;
  mmd: number;
  /** The same figures between two fresh data sets of the same size. */
  sw2Floor: number;
  mmdFloor: number;
}

export function qualityReport(generated: Float32Array, sampleFresh: (n: number, seed: number) => Float32Array, dim: number, n: number): QualityReport {
  const fresh = sampleFresh(n, 1001);
  const fresh2 = sampleFresh(n, 2002);
  return {
    sw2: slicedWasserstein2(generated, fresh, dim),
    mmd: mmdRbf(generated, fresh, dim),
    sw2Floor: slicedWasserstein2(fresh2, fresh, dim),
    mmdFloor: mmdRbf(fresh2, fresh, dim),
  };
}

export function formatQuality(r: QualityReport): string {
  return `sliced-W2 ${r.sw2.toFixed(4)} (noise floor ${r.sw2Floor.toFixed(4)}, ${(r.sw2 / r.sw2Floor).toFixed(2)}x)  MMD ${r.mmd.toFixed(5)} (floor ${r.mmdFloor.toFixed(5)})`;
}
