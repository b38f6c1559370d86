// Putting pictures together: side by side, or under a caption.
import { Raster, WHITE, type RGBA } from "./raster.js";
import { TITLE_BAND, drawTitle } from "./axes.js";

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

/** Rasters top to bottom on one canvas, left-aligned, `pad` pixels apart (default 8): rows of sideBySide make a grid. */
export function stacked(rasters: readonly Raster[], pad = 8, background: RGBA = WHITE): Raster {
  if (rasters.length === 0) throw new RangeError("stacked: needs at least one raster");
  const W = Math.max(...rasters.map((x) => x.width));
  const H = rasters.reduce((s, x) => s + x.height, 0) + pad * (rasters.length - 1);
  const out = new Raster(W, H, background);
  let y = 0;
  for (const src of rasters) {
    out.blit(src, 0, y);
    y += src.height + pad;
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
