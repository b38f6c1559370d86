// The pictures flowmatch draws: scatter panels, vector-field frames, loss curves, image grids and
// heat-maps. Pure functions from Float32Array data to a Raster.
import { AXIS_GREY, GRID_GREY, INK, PALETTE, Raster, WHITE, hexColor, mixColor, textWidth, withAlpha, GLYPH_HEIGHT, type RGBA } from "./raster.js";

/** [xmin, xmax, ymin, ymax] in data units. */
export type Bounds = [number, number, number, number];

const TITLE_BAND = 30; // room for a scale-2 title (14 px) with padding
const LEFT = 36; // y tick labels
const RIGHT = 12;
const BOTTOM = 22; // x tick labels
const LABEL_GREY: RGBA = hexColor("#5b6470");

// ---- numbers and axes -------------------------------------------------------------------------

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
  for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++) ticks.push(i === 0 ? 0 : parseFloat((i * step).toPrecision(12)));
  return ticks;
}

/** Quantile of the finite values in sorted order (linear interpolation). */
function quantile(sorted: Float64Array, q: number): number {
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
  const x0 = quantile(sx, q), x1 = quantile(sx, 1 - q), y0 = quantile(sy, q), y1 = quantile(sy, 1 - q);
  const half = (Math.max(x1 - x0, y1 - y0, 1e-6) / 2) * 1.08;
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  return [cx - half, cx + half, cy - half, cy + half];
}

/** A square or rectangular plot area on a raster and its data-to-pixel map. */
class Axes {
  constructor(
    readonly x0: number,
    readonly y0: number,
    readonly w: number,
    readonly h: number,
    readonly bounds: Bounds,
  ) {}
  /** Continuous pixel coordinates inside the plot area (0..w, 0..h), y up in data, down in pixels. */
  px(x: number): number {
    return ((x - this.bounds[0]) / (this.bounds[1] - this.bounds[0])) * this.w;
  }
  py(y: number): number {
    return (1 - (y - this.bounds[2]) / (this.bounds[3] - this.bounds[2])) * this.h;
  }
  /** A white plot-area raster with light grid lines at the ticks; draw on it, then `finish`. */
  canvas(): Raster {
    const c = new Raster(this.w, this.h, WHITE);
    for (const v of niceTicks(this.bounds[0], this.bounds[1])) c.line(this.px(v), 0, this.px(v), this.h, GRID_GREY);
    for (const v of niceTicks(this.bounds[2], this.bounds[3])) c.line(0, this.py(v), this.w, this.py(v), GRID_GREY);
    return c;
  }
  /** Copies the plot area in (clipping whatever was drawn past its edges), frames it, labels ticks. */
  finish(target: Raster, plot: Raster, tickLabels = true): void {
    target.blit(plot, this.x0, this.y0);
    target.strokeRect(this.x0 - 1, this.y0 - 1, this.w + 2, this.h + 2, AXIS_GREY);
    if (!tickLabels) return;
    for (const v of niceTicks(this.bounds[0], this.bounds[1])) {
      const x = this.x0 + this.px(v);
      target.fillRect(Math.round(x - 0.5), this.y0 + this.h + 1, 1, 3, AXIS_GREY);
      target.text(formatNumber(v), x, this.y0 + this.h + 6, LABEL_GREY, { align: "center" });
    }
    for (const v of niceTicks(this.bounds[2], this.bounds[3])) {
      const y = this.y0 + this.py(v);
      target.fillRect(this.x0 - 4, Math.round(y - 0.5), 3, 1, AXIS_GREY);
      target.text(formatNumber(v), this.x0 - 6, y - 3, LABEL_GREY, { align: "right" });
    }
  }
}

/** Title at scale 2 when it fits the width, else scale 1; centred at cx with its top at y. */
function drawTitle(r: Raster, text: string, cx: number, y: number, maxWidth: number, color: RGBA = INK): void {
  const scale = textWidth(text, 2) <= maxWidth ? 2 : 1;
  r.text(text, cx, y + (scale === 2 ? 0 : GLYPH_HEIGHT / 2), color, { scale, align: "center" });
}

// ---- scatter ----------------------------------------------------------------------------------

export interface ScatterPanel {
  title: string;
  /** [n, 2] flattened. */
  points: Float32Array;
  color?: RGBA;
}

export interface ScatterOptions {
  /** Plot-area side in pixels (default 320). */
  size?: number;
  /** Shared by all panels; default: square bounds around every panel's points. */
  bounds?: Bounds;
  /** Dot radius in pixels and dot alpha (0..255); default depends on the point count. */
  pointRadius?: number;
  pointAlpha?: number;
  tickLabels?: boolean;
}

/** Where panel `index` of a scatterPlot lies in the picture (plot area, top-left and side in pixels). */
export function scatterPanelRect(index: number, size = 320): { x0: number; y0: number; size: number } {
  return { x0: index * (LEFT + size + RIGHT) + LEFT, y0: TITLE_BAND, size };
}

function dotStyle(n: number): { radius: number; alpha: number } {
  // Fewer, bigger, opaque dots for small sets; many small translucent ones show density for big sets.
  if (n <= 300) return { radius: 2.6, alpha: 235 };
  if (n <= 3000) return { radius: 1.7, alpha: 190 };
  return { radius: 1.3, alpha: 140 };
}

/** Side-by-side scatter panels (e.g. "data" vs "generated") sharing one set of bounds. */
export function scatterPlot(panels: readonly ScatterPanel[], opts: ScatterOptions = {}): Raster {
  if (panels.length === 0) throw new RangeError("scatterPlot: needs at least one panel");
  const size = opts.size ?? 320;
  const bounds = opts.bounds ?? autoBounds(panels.map((p) => p.points));
  const r = new Raster(panels.length * (LEFT + size + RIGHT), TITLE_BAND + size + BOTTOM, WHITE);
  panels.forEach((panel, k) => {
    const rect = scatterPanelRect(k, size);
    const axes = new Axes(rect.x0, rect.y0, size, size, bounds);
    const plot = axes.canvas();
    const style = dotStyle(panel.points.length / 2);
    const color = withAlpha(panel.color ?? PALETTE[k % PALETTE.length], opts.pointAlpha ?? style.alpha);
    const radius = opts.pointRadius ?? style.radius;
    const pts = panel.points;
    for (let i = 0; i + 1 < pts.length; i += 2) plot.fillCircle(axes.px(pts[i]), axes.py(pts[i + 1]), radius, color);
    axes.finish(r, plot, opts.tickLabels ?? true);
    drawTitle(r, panel.title, rect.x0 + size / 2, 8, size + LEFT);
  });
  return r;
}

// ---- vector field -----------------------------------------------------------------------------

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

const SLOW_ARROW = hexColor("#a9c4de");
const FAST_ARROW = hexColor("#0b2a5b");
const PARTICLE = hexColor("#d1495b", 200);

export interface VectorFieldOptions {
  bounds: Bounds;
  gridN: number;
  /** Velocities at vectorFieldGrid(bounds, gridN), [gridN^2, 2] flattened. */
  field: Float32Array;
  /** [n, 2] flattened. */
  particles: Float32Array;
  t: number;
  title?: string;
  /** Plot-area side in pixels (default 420). */
  size?: number;
  /** Speed drawn as a full-cell arrow; fix it across frames so arrow lengths compare (default: this frame's max). */
  maxMagnitude?: number;
  particleColor?: RGBA;
}

/** One frame of a flow: arrows (length and colour by speed) on the grid, plus particle dots and "t=0.50". */
export function vectorFieldFrame(opts: VectorFieldOptions): Raster {
  const { bounds, gridN, field, particles } = opts;
  if (field.length !== gridN * gridN * 2) {
    throw new RangeError(`vectorFieldFrame: field has ${field.length} values, expected gridN*gridN*2 = ${gridN * gridN * 2}`);
  }
  const size = opts.size ?? 420;
  const r = new Raster(LEFT + size + RIGHT, TITLE_BAND + size + BOTTOM, WHITE);
  const axes = new Axes(LEFT, TITLE_BAND, size, size, bounds);
  const plot = axes.canvas();
  let maxMag = opts.maxMagnitude ?? 0;
  if (!(maxMag > 0)) {
    for (let k = 0; k < field.length; k += 2) {
      const m = Math.hypot(field[k], field[k + 1]);
      if (Number.isFinite(m) && m > maxMag) maxMag = m;
    }
  }
  const cell = size / gridN;
  const grid = vectorFieldGrid(bounds, gridN);
  for (let k = 0; k < field.length; k += 2) {
    const vx = field[k], vy = field[k + 1];
    const mag = Math.hypot(vx, vy);
    if (!Number.isFinite(mag)) continue;
    const rel = maxMag > 0 ? Math.min(1, mag / maxMag) : 0;
    const color = mixColor(SLOW_ARROW, FAST_ARROW, rel);
    const x = axes.px(grid[k]), y = axes.py(grid[k + 1]);
    const len = 0.9 * cell * rel;
    if (len < 2) {
      plot.fillCircle(x, y, 1, color);
      continue;
    }
    // Centre the arrow on the grid point; pixel y points down, so the y velocity flips sign.
    const ux = (vx / mag) * len * 0.5, uy = (-vy / mag) * len * 0.5;
    plot.arrow(x - ux, y - uy, x + ux, y + uy, color, { width: 1.2, headLength: Math.min(7, 0.2 * cell + 2) });
  }
  const dot = opts.particleColor ?? PARTICLE;
  const radius = particles.length / 2 > 3000 ? 1.4 : 1.9;
  for (let i = 0; i + 1 < particles.length; i += 2) plot.fillCircle(axes.px(particles[i]), axes.py(particles[i + 1]), radius, dot);
  axes.finish(r, plot);
  const tLabel = `t=${opts.t.toFixed(2)}`;
  if (opts.title) {
    r.text(opts.title, LEFT, 8, INK, { scale: textWidth(opts.title, 2) <= size - textWidth(tLabel, 2) - 16 ? 2 : 1 });
    r.text(tLabel, LEFT + size, 8, INK, { scale: 2, align: "right" });
  } else {
    r.text(tLabel, LEFT + size / 2, 8, INK, { scale: 2, align: "center" });
  }
  return r;
}

// ---- line plot --------------------------------------------------------------------------------

export interface LineSeries {
  name: string;
  values: readonly number[];
  color?: RGBA;
}

export interface LinePlotOptions {
  title?: string;
  logY?: boolean;
  width?: number;
  height?: number;
  /** Moving-average window; 0/1 = draw raw values only. Default: about 1/40 of the longest series. */
  smooth?: number;
  /** x of values[i] is xOffset + i * xStep (e.g. xStep = 10 when the loss is logged every 10 steps). */
  xStep?: number;
  xOffset?: number;
  xLabel?: string;
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
    const a = Math.max(0, i - half), b = Math.min(values.length, i + half + 1);
    const c = count[b] - count[a];
    return c > 0 ? (sum[b] - sum[a]) / c : NaN;
  });
}

/** Loss curves: raw values drawn faint, a moving average on top, legend, ticks, optional log y. */
export function linePlot(series: readonly LineSeries[], opts: LinePlotOptions = {}): Raster {
  const W = opts.width ?? 640, H = opts.height ?? 400;
  const left = 58, right = 16, top = opts.title ? 38 : 14, bottom = opts.xLabel ? 40 : 28;
  const pw = W - left - right, ph = H - top - bottom;
  if (pw < 20 || ph < 20) throw new RangeError(`linePlot: ${W}x${H} leaves no room to plot`);
  const r = new Raster(W, H, WHITE);
  const log = opts.logY ?? false;
  // Plot in transformed space (log10 for logY) so smoothing and ticks behave the same either way.
  const tf = (v: number) => (log ? (v > 0 ? Math.log10(v) : NaN) : v);
  const longest = Math.max(2, ...series.map((s) => s.values.length));
  const window = opts.smooth ?? (longest >= 80 ? Math.round(longest / 40) : 1);
  const raw = series.map((s) => s.values.map(tf));
  const smooth = raw.map((v) => (window > 1 ? movingAverage(v, window) : v));

  // y range from the smoothed curve plus raw values between the 1st and 99th percentile, so one
  // early spike does not flatten the rest of the curve.
  let lo = Infinity, hi = -Infinity;
  const take = (v: number) => {
    if (Number.isFinite(v)) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
  };
  smooth.forEach((s) => s.forEach(take));
  for (const v of raw) {
    const sorted = Float64Array.from(v.filter(Number.isFinite)).sort();
    if (sorted.length > 0) (take(quantile(sorted, 0.01)), take(quantile(sorted, 0.99)));
  }
  if (!Number.isFinite(lo)) (lo = 0), (hi = 1);
  if (hi - lo < 1e-12) (lo -= 0.5), (hi += 0.5);
  const padY = 0.05 * (hi - lo);
  lo -= padY;
  hi += padY;
  const xStep = opts.xStep ?? 1, xOffset = opts.xOffset ?? 0;
  const xLo = xOffset, xHi = xOffset + (longest - 1) * xStep;
  const axes = new Axes(left, top, pw, ph, [xLo, xHi, lo, hi]);
  const plot = new Raster(pw, ph, WHITE);

  // Ticks: round values on a linear axis; decades (or 1-2-5 within decades when the range is short) on a log axis.
  let yTicks: number[];
  if (log) {
    const decades: number[] = [];
    for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) decades.push(e);
    const mult = decades.length >= 2 ? [1] : [1, 2, 5];
    yTicks = [];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) for (const m of mult) yTicks.push(e + Math.log10(m));
    yTicks = yTicks.filter((v) => v >= lo && v <= hi);
    if (yTicks.length < 2) yTicks = niceTicks(lo, hi, 4);
  } else {
    yTicks = niceTicks(lo, hi, 5);
  }
  const xTicks = niceTicks(xLo, xHi, 6);
  for (const v of yTicks) plot.line(0, axes.py(v), pw, axes.py(v), GRID_GREY);
  for (const v of xTicks) plot.line(axes.px(v), 0, axes.px(v), ph, GRID_GREY);

  // All faint raw curves first, so no series' noise covers another's average.
  const xsOf = (k: number) => raw[k].map((_, i) => axes.px(xOffset + i * xStep));
  if (window > 1) series.forEach((s, k) => plot.polyline(xsOf(k), raw[k].map((v) => axes.py(v)), mixColor(s.color ?? PALETTE[k % PALETTE.length], WHITE, 0.72), 1));
  series.forEach((s, k) => plot.polyline(xsOf(k), smooth[k].map((v) => axes.py(v)), s.color ?? PALETTE[k % PALETTE.length], 2));

  r.blit(plot, left, top);
  r.strokeRect(left - 1, top - 1, pw + 2, ph + 2, AXIS_GREY);
  for (const v of yTicks) {
    const y = top + axes.py(v);
    r.fillRect(left - 4, Math.round(y - 0.5), 3, 1, AXIS_GREY);
    r.text(formatNumber(log ? 10 ** v : v), left - 6, y - 3, LABEL_GREY, { align: "right" });
  }
  for (const v of xTicks) {
    const x = left + axes.px(v);
    r.fillRect(Math.round(x - 0.5), top + ph + 1, 1, 3, AXIS_GREY);
    r.text(formatNumber(v), x, top + ph + 6, LABEL_GREY, { align: "center" });
  }
  if (opts.xLabel) r.text(opts.xLabel, left + pw / 2, top + ph + 20, LABEL_GREY, { align: "center" });
  if (opts.title) drawTitle(r, opts.title, W / 2, 10, W - 8);

  // Legend in the top-right corner of the plot, on a white card so curves do not cross the names.
  const rowH = 12;
  const legendW = 28 + Math.max(...series.map((s) => textWidth(s.name)));
  const lx = left + pw - legendW - 8, ly = top + 6;
  r.fillRect(lx - 4, ly - 3, legendW + 8, series.length * rowH + 4, withAlpha(WHITE, 230));
  series.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length];
    const y = ly + k * rowH + 3;
    r.line(lx, y + 0.5, lx + 18, y + 0.5, color, 2);
    r.text(s.name, lx + 24, y - 3, INK);
  });
  return r;
}

// ---- image grid -------------------------------------------------------------------------------

export interface ImageGridOptions {
  n: number;
  height: number;
  width: number;
  channels: 1 | 3;
  /** Images per row (e.g. samples per class, giving one row per class). */
  cols: number;
  /** Integer upscale per image pixel (default 2). */
  scale?: number;
  /** Gap between images in pixels (default 2). */
  pad?: number;
  /** How values map to black..white: [-1, 1] or [0, 1]; values outside are clipped. */
  range: "minus1to1" | "zero1";
  /** Text to the left of each row, e.g. the class. */
  rowLabels?: readonly string[];
  padColor?: RGBA;
}

/** Where image k's top-left pixel lands in imageGrid's picture. */
export function imageGridCell(k: number, opts: ImageGridOptions): { x: number; y: number } {
  const scale = opts.scale ?? 2, pad = opts.pad ?? 2;
  const labelW = opts.rowLabels ? 8 + Math.max(0, ...opts.rowLabels.map((l) => textWidth(l))) : 0;
  return {
    x: labelW + pad + (k % opts.cols) * (opts.width * scale + pad),
    y: pad + Math.floor(k / opts.cols) * (opts.height * scale + pad),
  };
}

/** Images ([n, h, w, c] flattened, row-major, channels last) laid out `cols` per row. */
export function imageGrid(images: Float32Array, opts: ImageGridOptions): Raster {
  const { n, height: h, width: w, channels: c, cols } = opts;
  if (images.length !== n * h * w * c) {
    throw new RangeError(`imageGrid: got ${images.length} values, expected n*height*width*channels = ${n}*${h}*${w}*${c} = ${n * h * w * c}`);
  }
  if (!(cols >= 1)) throw new RangeError(`imageGrid: cols must be >= 1, got ${cols}`);
  const scale = Math.max(1, Math.round(opts.scale ?? 2)), pad = opts.pad ?? 2;
  const rows = Math.ceil(n / cols);
  const origin = imageGridCell(0, opts);
  const r = new Raster(origin.x + cols * (w * scale + pad), pad + rows * (h * scale + pad), opts.padColor ?? hexColor("#f3f4f6"));
  const lo = opts.range === "minus1to1" ? -1 : 0;
  const per = h * w * c;
  const d = r.data;
  for (let k = 0; k < n; k++) {
    const cell = imageGridCell(k, opts);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const base = k * per + (y * w + x) * c;
        const rgb = [0, 1, 2].map((ch) => {
          const v = images[base + (c === 3 ? ch : 0)];
          // NaN maps to 0 via the clamp below; 255 * (v - lo) / (1 - lo) maps the range to bytes.
          return Number.isFinite(v) ? (255 * (v - lo)) / (1 - lo) : 0;
        });
        for (let dy = 0; dy < scale; dy++) {
          let o = ((cell.y + y * scale + dy) * r.width + cell.x + x * scale) * 4;
          for (let dx = 0; dx < scale; dx++, o += 4) {
            d[o] = rgb[0];
            d[o + 1] = rgb[1];
            d[o + 2] = rgb[2];
            d[o + 3] = 255;
          }
        }
      }
    }
  }
  opts.rowLabels?.forEach((label, row) => {
    r.text(label, 4, pad + row * (h * scale + pad) + (h * scale) / 2 - 3, INK);
  });
  return r;
}

// ---- heat-map ---------------------------------------------------------------------------------

const VIRIDIS = [hexColor("#440154"), hexColor("#3b528b"), hexColor("#21918c"), hexColor("#5ec962"), hexColor("#fde725")];

/** Viridis colour map (5 anchors, linearly interpolated), u in [0, 1]. */
export function viridis(u: number): RGBA {
  const x = Math.min(1, Math.max(0, Number.isFinite(u) ? u : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  return mixColor(VIRIDIS[i], VIRIDIS[i + 1], x - i);
}

/** Heat-map of gridN x gridN values laid out as vectorFieldGrid (row-major from the top-left), e.g. a log-density. */
export function heatmap(values: Float32Array | Float64Array, gridN: number, opts: { title?: string; size?: number; bounds?: Bounds } = {}): Raster {
  if (values.length !== gridN * gridN) throw new RangeError(`heatmap: got ${values.length} values, expected gridN*gridN = ${gridN * gridN}`);
  const size = opts.size ?? 320;
  const bounds = opts.bounds ?? [0, 1, 0, 1];
  const r = new Raster(LEFT + size + RIGHT, TITLE_BAND + size + (opts.bounds ? BOTTOM : 12), WHITE);
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
  if (!(hi > lo)) hi = lo + 1;
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

// ---- composition ------------------------------------------------------------------------------

/** Rasters left to right on one canvas, top-aligned, `pad` pixels apart (default 8). */
export function sideBySide(rasters: readonly Raster[], pad = 8, background: RGBA = WHITE): Raster {
  if (rasters.length === 0) throw new RangeError("sideBySide: needs at least one raster");
  const W = rasters.reduce((s, x) => s + x.width, 0) + pad * (rasters.length - 1);
  const H = Math.max(...rasters.map((x) => x.height));
  const out = new Raster(W, H, background);
  let x = 0;
  for (const src of rasters) {
    out.blit(src, x, 0);
    x += src.width + pad;
  }
  return out;
}

/** The raster with a caption band on top (scale-2 text when it fits). */
export function labelled(raster: Raster, text: string, background: RGBA = WHITE): Raster {
  const band = TITLE_BAND;
  const out = new Raster(raster.width, raster.height + band, background);
  out.blit(raster, 0, band);
  drawTitle(out, text, raster.width / 2, 8, raster.width - 8);
  return out;
}
