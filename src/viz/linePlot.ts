// Loss curves: raw values faint, a moving average on top, legend, optional log y.
import { AXIS_GREY, GRID_GREY, INK, PALETTE, Raster, WHITE, mixColor, textWidth, withAlpha, type RGBA } from "./raster.js";
import { formatNumber, movingAverage, niceTicks, quantile } from "./scale.js";
import { LABEL_GREY, Axes, drawTitle } from "./axes.js";

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

/** Loss curves: raw values drawn faint, a moving average on top, legend, ticks, optional log y. */
export function linePlot(series: readonly LineSeries[], opts: LinePlotOptions = {}): Raster {
  const W = opts.width ?? 640,
    H = opts.height ?? 400;
  const left = 58,
    right = 16,
    top = opts.title ? 38 : 14,
    bottom = opts.xLabel ? 40 : 28;
  const pw = W - left - right,
    ph = H - top - bottom;
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
  let lo = Infinity,
    hi = -Infinity;
  const take = (v: number) => {
    if (Number.isFinite(v)) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
  };
  smooth.forEach((s) => s.forEach(take));
  for (const v of raw) {
    const sorted = Float64Array.from(v.filter(Number.isFinite)).sort();
    if (sorted.length > 0) take(quantile(sorted, 0.01)), take(quantile(sorted, 0.99));
  }
  if (!Number.isFinite(lo)) (lo = 0), (hi = 1);
  if (hi - lo < 1e-12) (lo -= 0.5), (hi += 0.5);
  const padY = 0.05 * (hi - lo);
  lo -= padY;
  hi += padY;
  const xStep = opts.xStep ?? 1,
    xOffset = opts.xOffset ?? 0;
  const xLo = xOffset,
    xHi = xOffset + (longest - 1) * xStep;
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
  if (window > 1)
    series.forEach((s, k) =>
      plot.polyline(
        xsOf(k),
        raw[k].map((v) => axes.py(v)),
        mixColor(s.color ?? PALETTE[k % PALETTE.length], WHITE, 0.72),
        1,
      ),
    );
  series.forEach((s, k) =>
    plot.polyline(
      xsOf(k),
      smooth[k].map((v) => axes.py(v)),
      s.color ?? PALETTE[k % PALETTE.length],
      2,
    ),
  );

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
  const lx = left + pw - legendW - 8,
    ly = top + 6;
  r.fillRect(lx - 4, ly - 3, legendW + 8, series.length * rowH + 4, withAlpha(WHITE, 230));
  series.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length];
    const y = ly + k * rowH + 3;
    r.line(lx, y + 0.5, lx + 18, y + 0.5, color, 2);
    r.text(s.name, lx + 24, y - 3, INK);
  });
  return r;
}
