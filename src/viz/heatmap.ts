// Heat-maps of values on the vector-field grid (e.g. a log-density), coloured with viridis.
import { Raster, WHITE, hexColor, mixColor, type RGBA } from "./raster.js";
import type { Bounds } from "./scale.js";
import { TITLE_BAND, LEFT, RIGHT, BOTTOM, Axes, drawTitle } from "./axes.js";

const VIRIDIS = [hexColor("#440154"), hexColor("#3b528b"), hexColor("#21918c"), hexColor("#5ec962"), hexColor("#fde725")];

/** Viridis colour map (5 anchors, linearly interpolated), u in [0, 1]. */
export function viridis(u: number): RGBA {
  const x = Math.min(1, Math.max(0, Number.isFinite(u) ? u : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  return mixColor(VIRIDIS[i], VIRIDIS[i + 1], x - i);
}

/**
 * The colour scale for values drawn with one shared scale: [min, max] of the finite values over all the
 * arrays, or with `upperQuantile` q < 1, [min, the q-quantile]: one spike (a density's single grid point
 * far above the rest) then saturates at the top colour instead of darkening everything else.
 * [lo, lo + 1] when the scale would be empty, [0, 1] when no value is finite.
 */
export function valueRange(arrays: readonly (Float32Array | Float64Array)[], opts: { upperQuantile?: number } = {}): [number, number] {
  const q = opts.upperQuantile ?? 1;
  if (!(q > 0 && q <= 1)) throw new RangeError(`valueRange: upperQuantile must be in (0, 1], got ${q}`);
  const finite: number[] = [];
  for (const values of arrays) for (const v of values) if (Number.isFinite(v)) finite.push(v);
  if (finite.length === 0) return [0, 1];
  finite.sort((a, b) => a - b);
  const lo = finite[0];
  const hi = finite[Math.min(finite.length - 1, Math.ceil(q * finite.length) - 1)];
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}

/**
 * Heat-map of gridN x gridN values laid out as vectorFieldGrid (row-major from the top-left), e.g. a
 * log-density. `range` fixes the colour scale (viridis from range[0] to range[1]), so heat-maps drawn
 * side by side with one `valueRange` of all their values can be compared (values beyond it take the end
 * colours); default: this map's own [min, max].
 */
export function heatmap(
  values: Float32Array | Float64Array,
  gridN: number,
  opts: { title?: string; size?: number; bounds?: Bounds; range?: [number, number] } = {},
): Raster {
  if (values.length !== gridN * gridN)
    throw new RangeError(`heatmap: got ${values.length} values, expected gridN*gridN = ${gridN * gridN}`);
  const size = opts.size ?? 320;
  const bounds = opts.bounds ?? [0, 1, 0, 1];
  const r = new Raster(LEFT + size + RIGHT, TITLE_BAND + size + (opts.bounds ? BOTTOM : 12), WHITE);
  const [lo, hi] = opts.range ?? valueRange([values]);
  const axes = new Axes(LEFT, TITLE_BAND, size, size, bounds);
  const plot = new Raster(size, size, WHITE);
  for (let y = 0; y < size; y++) {
    const row = Math.min(gridN - 1, Math.floor((y * gridN) / size));
    for (let x = 0; x < size; x++) {
      const col = Math.min(gridN - 1, Math.floor((x * gridN) / size));
      plot.setPixel(x, y, viridis((values[row * gridN + col] - lo) / (hi - lo)));
    }
  }
  axes.finish(r, plot, opts.bounds !== undefined);
  if (opts.title) drawTitle(r, opts.title, LEFT + size / 2, 8, size + LEFT);
  return r;
}
