// Scatter panels side by side (e.g. data vs generated samples) sharing one set of bounds.
import { PALETTE, Raster, WHITE, withAlpha, type RGBA } from "./raster.js";
import { type Bounds, autoBounds } from "./scale.js";
import { TITLE_BAND, LEFT, RIGHT, BOTTOM, Axes, drawTitle } from "./axes.js";

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
