// Numbers shared by every plot, here and in the browser playground: tick values and labels, bounds
// around point clouds, quantiles, the vector-field grid and loss smoothing. Plain numbers only (no
// raster), so the page's canvas drawing can use them without pulling in the PNG codec.

/** [xmin, xmax, ymin, ymax] in data units. */
export type Bounds = [number, number, number, number];

/** Short label for a tick or a value: "0", "0.25", "1200", "1e-4", "2.5e+5". */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace(".0e", "e");
  return String(parseFloat(v.toPrecision(4)));
}

/** About `target` round tick values (1, 2, 5 x 10^k steps) inside [lo, hi]. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) return [lo];
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3.5 ? 2 : norm < 7.5 ? 5 : 10) * mag;
  const ticks: number[] = [];
  // Multiply integer counts by the step (no accumulation) and round off float dust (0.6000000000000001).
  for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++)
    ticks.push(i === 0 ? 0 : parseFloat((i * step).toPrecision(12)));
  return ticks;
}

/** Quantile of the finite values in sorted order (linear interpolation). */
export function quantile(sorted: Float64Array, q: number): number {
  const pos = q * (sorted.length - 1);
  const i = Math.floor(pos);
  const j = Math.min(sorted.length - 1, i + 1);
  return sorted[i] + (sorted[j] - sorted[i]) * (pos - i);
}

/**
 * Square bounds covering all panels' points. Uses the 0.2%..99.8% quantiles per axis so a few
 * diverged samples cannot shrink the picture to a dot, then pads 8% and equalises the ranges.
 */
export function autoBounds(pointSets: readonly Float32Array[]): Bounds {
  const xs: number[] = [];
  const ys: number[] = [];
  for (const p of pointSets) {
    for (let i = 0; i + 1 < p.length; i += 2) {
      if (Number.isFinite(p[i]) && Number.isFinite(p[i + 1])) {
        xs.push(p[i]);
        ys.push(p[i + 1]);
      }
    }
  }
  if (xs.length === 0) return [-1, 1, -1, 1];
  const sx = Float64Array.from(xs).sort();
  const sy = Float64Array.from(ys).sort();
  const q = sx.length > 500 ? 0.002 : 0;
  const x0 = quantile(sx, q),
    x1 = quantile(sx, 1 - q),
    y0 = quantile(sy, q),
    y1 = quantile(sy, 1 - q);
  const half = (Math.max(x1 - x0, y1 - y0, 1e-6) / 2) * 1.08;
  const cx = (x0 + x1) / 2,
    cy = (y0 + y1) / 2;
  return [cx - half, cx + half, cy - half, cy + half];
}

/**
 * Cell centres of a gridN x gridN grid over bounds, [gridN^2, 2] flattened, row-major from the
 * top-left (k = row * gridN + col, row 0 at ymax): the layout vectorFieldFrame and heatmap expect.
 */
export function vectorFieldGrid(bounds: Bounds, gridN: number): Float32Array {
  if (!Number.isInteger(gridN) || gridN < 1) throw new RangeError(`vectorFieldGrid: gridN must be a positive integer, got ${gridN}`);
  const out = new Float32Array(gridN * gridN * 2);
  for (let row = 0; row < gridN; row++) {
    for (let col = 0; col < gridN; col++) {
      const k = row * gridN + col;
      out[2 * k] = bounds[0] + ((col + 0.5) / gridN) * (bounds[1] - bounds[0]);
      out[2 * k + 1] = bounds[3] - ((row + 0.5) / gridN) * (bounds[3] - bounds[2]);
    }
  }
  return out;
}

/** Centred moving average with the window shrinking at the ends; non-finite values are skipped. */
export function movingAverage(values: readonly number[], window: number): number[] {
  const half = Math.floor(Math.max(1, window) / 2);
  const sum = new Float64Array(values.length + 1);
  const count = new Float64Array(values.length + 1);
  for (let i = 0; i < values.length; i++) {
    const ok = Number.isFinite(values[i]);
    sum[i + 1] = sum[i] + (ok ? values[i] : 0);
    count[i + 1] = count[i] + (ok ? 1 : 0);
  }
  return values.map((_, i) => {
    const a = Math.max(0, i - half),
      b = Math.min(values.length, i + half + 1);
    const c = count[b] - count[a];
    return c > 0 ? (sum[b] - sum[a]) / c : NaN;
  });
}
