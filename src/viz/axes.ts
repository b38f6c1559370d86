// The frame the plots share: margins, a plot area with its data-to-pixel map, grid lines and tick
// labels, and titles. Internal to viz.
import { AXIS_GREY, GRID_GREY, INK, Raster, WHITE, hexColor, textWidth, GLYPH_HEIGHT, type RGBA } from "./raster.js";
import { formatNumber, niceTicks, type Bounds } from "./scale.js";

export const TITLE_BAND = 30; // room for a scale-2 title (14 px) with padding
export const LEFT = 36; // y tick labels
export const RIGHT = 12;
export const BOTTOM = 22; // x tick labels
export const LABEL_GREY: RGBA = hexColor("#5b6470");

/** A square or rectangular plot area on a raster and its data-to-pixel map. */
export class Axes {
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
export function drawTitle(r: Raster, text: string, cx: number, y: number, maxWidth: number, color: RGBA = INK): void {
  const scale = textWidth(text, 2) <= maxWidth ? 2 : 1;
  r.text(text, cx, y + (scale === 2 ? 0 : GLYPH_HEIGHT / 2), color, { scale, align: "center" });
}
