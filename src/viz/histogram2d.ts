// Density histograms of 2-D samples (the seed project's smooth histograms): bin counts on the
// vector-field grid layout, blurred by a small Gaussian so many samples read as a density.
import type { Raster } from "./raster.js";
import type { Bounds } from "./scale.js";
import { heatmap } from "./heatmap.js";

/** Options of densityPlot: the plotted square, bins, blur, title and size. */
export interface Histogram2dOptions {
  bounds: Bounds;
  /** Bins per axis (default 100). */
  bins?: number;
  /** Gaussian blur, in bins (default 1; 0 = raw counts). */
  smooth?: number;
  title?: string;
  /** Plot-area side in pixels (default 320). */
  size?: number;
}

/**
 * Share of the points in each of bins x bins cells over `bounds`, row-major from the top-left (the
 * layout of vectorFieldGrid and heatmap), blurred by a Gaussian of `smooth` bins. Points outside the
 * bounds are left out, so the values sum to the share inside (before blurring moves mass past the edge).
 */
export function histogram2d(points: Float32Array, bounds: Bounds, bins = 100, smooth = 1): Float64Array {
  const [x0, x1, y0, y1] = bounds;
  const n = points.length / 2;
  const counts = new Float64Array(bins * bins);
  for (let i = 0; i < n; i++) {
    const col = Math.floor(((points[2 * i] - x0) / (x1 - x0)) * bins);
    const row = Math.floor(((y1 - points[2 * i + 1]) / (y1 - y0)) * bins);
    if (col >= 0 && col < bins && row >= 0 && row < bins) counts[row * bins + col] += 1 / n;
  }
  return smooth > 0 ? blur(counts, bins, smooth) : counts;
}

/** Separable Gaussian blur (radius 3 sigma); mass that would leave the grid is dropped. */
function blur(v: Float64Array, bins: number, sigma: number): Float64Array {
  const radius = Math.ceil(3 * sigma);
  const kernel = Array.from({ length: 2 * radius + 1 }, (_, k) => Math.exp(-((k - radius) ** 2) / (2 * sigma * sigma)));
  const total = kernel.reduce((a, b) => a + b, 0);
  for (let k = 0; k < kernel.length; k++) kernel[k] /= total;
  const pass = (src: Float64Array, horizontal: boolean) => {
    const out = new Float64Array(src.length);
    for (let row = 0; row < bins; row++) {
      for (let col = 0; col < bins; col++) {
        let s = 0;
        for (let k = -radius; k <= radius; k++) {
          const r = horizontal ? row : row + k;
          const c = horizontal ? col + k : col;
          if (r >= 0 && r < bins && c >= 0 && c < bins) s += kernel[k + radius] * src[r * bins + c];
        }
        out[row * bins + col] = s;
      }
    }
    return out;
  };
  return pass(pass(v, true), false);
}

/** A density picture of 2-D samples: their smoothed histogram as a heat-map with axes. */
export function densityPlot(points: Float32Array, opts: Histogram2dOptions): Raster {
  const bins = opts.bins ?? 100;
  return heatmap(histogram2d(points, opts.bounds, bins, opts.smooth ?? 1), bins, {
    title: opts.title,
    size: opts.size,
    bounds: opts.bounds,
  });
}
