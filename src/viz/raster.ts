// A small RGBA raster with alpha-blended, anti-aliased drawing primitives and a 5x7 bitmap font.
// Pixel (i, j) covers [i, i+1) x [j, j+1); its centre is (i + 0.5, j + 0.5). y grows downward.
import { encodePng } from "./png.js";
import { GLYPH_HEIGHT, GLYPH_WIDTH, glyphDrop, glyphRows, textWidth } from "./font.js";

export { GLYPH_HEIGHT, GLYPH_WIDTH, textWidth };

/** A colour as [r, g, b, a], each 0..255. */
export type RGBA = readonly [number, number, number, number];

/** "#rrggbb" to RGBA. */
export function hexColor(hex: string, alpha = 255): RGBA {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex);
  if (!m) throw new RangeError(`hexColor: "${hex}" is not #rrggbb`);
  const v = parseInt(m[1], 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255, alpha];
}

/** The same colour with a new alpha. */
export function withAlpha(color: RGBA, alpha: number): RGBA {
  return [color[0], color[1], color[2], alpha];
}

/** Linear mix of two colours, t = 0 gives a, t = 1 gives b. */
export function mixColor(a: RGBA, b: RGBA, t: number): RGBA {
  const s = Math.min(1, Math.max(0, t));
  return [a[0] + (b[0] - a[0]) * s, a[1] + (b[1] - a[1]) * s, a[2] + (b[2] - a[2]) * s, a[3] + (b[3] - a[3]) * s];
}

export const WHITE: RGBA = [255, 255, 255, 255];
export const BLACK: RGBA = [0, 0, 0, 255];
export const TRANSPARENT: RGBA = [0, 0, 0, 0];
/** Text and axis ink: near-black reads softer than pure black. */
export const INK: RGBA = hexColor("#222831");
export const GRID_GREY: RGBA = hexColor("#e4e7eb");
export const AXIS_GREY: RGBA = hexColor("#8a929c");

/** Series colours (a muted, colour-blind-friendly set); the first two read well as "data" vs "model". */
export const PALETTE: readonly RGBA[] = [
  hexColor("#1f3b73"), // deep blue
  hexColor("#d1495b"), // crimson
  hexColor("#2a9d8f"), // teal
  hexColor("#e9a03b"), // amber
  hexColor("#6a4c93"), // purple
  hexColor("#4d9de0"), // sky
  hexColor("#7a8b2f"), // olive
];

export interface TextOptions {
  /** Integer pixel scale of the 5x7 glyphs (1 = 7 px tall). */
  scale?: number;
  align?: "left" | "center" | "right";
}

export interface ArrowOptions {
  width?: number;
  headLength?: number;
  headWidth?: number;
}

const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

export class Raster {
  readonly width: number;
  readonly height: number;
  /** Row-major RGBA bytes, 4 per pixel. */
  readonly data: Uint8ClampedArray;

  constructor(width: number, height: number, background: RGBA = WHITE) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
      throw new RangeError(`Raster size must be positive integers, got ${width}x${height}`);
    }
    this.width = width;
    this.height = height;
    this.data = new Uint8ClampedArray(width * height * 4);
    this.fill(background);
  }

  /** Wraps (copies) existing RGBA bytes, e.g. from decodePng. */
  static fromRgba(width: number, height: number, rgba: ArrayLike<number>): Raster {
    if (rgba.length !== width * height * 4) {
      throw new RangeError(`Raster.fromRgba: expected ${width * height * 4} bytes for ${width}x${height}, got ${rgba.length}`);
    }
    const r = new Raster(width, height, TRANSPARENT);
    r.data.set(rgba);
    return r;
  }

  /** Overwrites every pixel (no blending). */
  fill(color: RGBA): this {
    const d = this.data;
    for (let i = 0; i < d.length; i += 4) {
      d[i] = color[0];
      d[i + 1] = color[1];
      d[i + 2] = color[2];
      d[i + 3] = color[3];
    }
    return this;
  }

  getPixel(x: number, y: number): RGBA {
    const o = (y * this.width + x) * 4;
    const d = this.data;
    return [d[o], d[o + 1], d[o + 2], d[o + 3]];
  }

  /** "Over" blend of color onto pixel (x, y) with extra coverage in [0, 1]; pixels outside are ignored. */
  blendPixel(x: number, y: number, color: RGBA, coverage = 1): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const a = (color[3] / 255) * clamp01(coverage);
    if (a <= 0) return;
    const o = ((y | 0) * this.width + (x | 0)) * 4;
    const d = this.data;
    const keep = 1 - a;
    d[o] = color[0] * a + d[o] * keep;
    d[o + 1] = color[1] * a + d[o + 1] * keep;
    d[o + 2] = color[2] * a + d[o + 2] * keep;
    d[o + 3] = 255 * a + d[o + 3] * keep;
  }

  /** Blends one pixel at full coverage (alpha from the colour). */
  setPixel(x: number, y: number, color: RGBA): this {
    this.blendPixel(x, y, color, 1);
    return this;
  }

  /** Axis-aligned rectangle in pixel units, blended. */
  fillRect(x: number, y: number, w: number, h: number, color: RGBA): this {
    const x0 = Math.max(0, Math.round(x)),
      y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w)),
      y1 = Math.min(this.height, Math.round(y + h));
    for (let j = y0; j < y1; j++) for (let i = x0; i < x1; i++) this.blendPixel(i, j, color);
    return this;
  }

  /** Rectangle outline whose lines lie inside [x, x+w) x [y, y+h). */
  strokeRect(x: number, y: number, w: number, h: number, color: RGBA, lineWidth = 1): this {
    this.fillRect(x, y, w, lineWidth, color);
    this.fillRect(x, y + h - lineWidth, w, lineWidth, color);
    this.fillRect(x, y + lineWidth, lineWidth, h - 2 * lineWidth, color);
    this.fillRect(x + w - lineWidth, y + lineWidth, lineWidth, h - 2 * lineWidth, color);
    return this;
  }

  /** Filled disc centred at (cx, cy) in continuous coordinates, with a one-pixel soft edge. */
  fillCircle(cx: number, cy: number, radius: number, color: RGBA): this {
    if (!Number.isFinite(cx) || !Number.isFinite(cy)) return this;
    const reach = radius + 0.5;
    const i0 = Math.max(0, Math.floor(cx - reach)),
      i1 = Math.min(this.width - 1, Math.floor(cx + reach));
    const j0 = Math.max(0, Math.floor(cy - reach)),
      j1 = Math.min(this.height - 1, Math.floor(cy + reach));
    for (let j = j0; j <= j1; j++) {
      const dy = j + 0.5 - cy;
      for (let i = i0; i <= i1; i++) {
        const dx = i + 0.5 - cx;
        const cover = reach - Math.sqrt(dx * dx + dy * dy);
        if (cover > 0) this.blendPixel(i, j, color, cover);
      }
    }
    return this;
  }

  /** Anti-aliased segment of the given width with round caps (coverage from distance to the segment). */
  line(x0: number, y0: number, x1: number, y1: number, color: RGBA, width = 1): this {
    if (![x0, y0, x1, y1].every(Number.isFinite)) return this;
    const half = width / 2;
    const reach = half + 0.5;
    const i0 = Math.max(0, Math.floor(Math.min(x0, x1) - reach)),
      i1 = Math.min(this.width - 1, Math.floor(Math.max(x0, x1) + reach));
    const j0 = Math.max(0, Math.floor(Math.min(y0, y1) - reach)),
      j1 = Math.min(this.height - 1, Math.floor(Math.max(y0, y1) + reach));
    const dx = x1 - x0,
      dy = y1 - y0;
    const len2 = dx * dx + dy * dy;
    for (let j = j0; j <= j1; j++) {
      const py = j + 0.5;
      for (let i = i0; i <= i1; i++) {
        const px = i + 0.5;
        const s = len2 > 0 ? clamp01(((px - x0) * dx + (py - y0) * dy) / len2) : 0;
        const ex = px - (x0 + s * dx),
          ey = py - (y0 + s * dy);
        const cover = reach - Math.sqrt(ex * ex + ey * ey);
        if (cover > 0) this.blendPixel(i, j, color, cover);
      }
    }
    return this;
  }

  /**
   * Connected line through (xs[k], ys[k]); non-finite points break it. Pixels are covered once per
   * polyline (max coverage), so translucent colours do not darken at the joints.
   */
  polyline(xs: ArrayLike<number>, ys: ArrayLike<number>, color: RGBA, width = 1): this {
    const cover = new Float32Array(this.width * this.height);
    const half = width / 2,
      reach = half + 0.5;
    for (let k = 0; k + 1 < xs.length; k++) {
      const x0 = xs[k],
        y0 = ys[k],
        x1 = xs[k + 1],
        y1 = ys[k + 1];
      if (![x0, y0, x1, y1].every(Number.isFinite)) continue;
      const i0 = Math.max(0, Math.floor(Math.min(x0, x1) - reach)),
        i1 = Math.min(this.width - 1, Math.floor(Math.max(x0, x1) + reach));
      const j0 = Math.max(0, Math.floor(Math.min(y0, y1) - reach)),
        j1 = Math.min(this.height - 1, Math.floor(Math.max(y0, y1) + reach));
      const dx = x1 - x0,
        dy = y1 - y0,
        len2 = dx * dx + dy * dy;
      for (let j = j0; j <= j1; j++) {
        const py = j + 0.5;
        for (let i = i0; i <= i1; i++) {
          const px = i + 0.5;
          const s = len2 > 0 ? clamp01(((px - x0) * dx + (py - y0) * dy) / len2) : 0;
          const ex = px - (x0 + s * dx),
            ey = py - (y0 + s * dy);
          const c = clamp01(reach - Math.sqrt(ex * ex + ey * ey));
          const o = j * this.width + i;
          if (c > cover[o]) cover[o] = c;
        }
      }
    }
    for (let o = 0; o < cover.length; o++) if (cover[o] > 0) this.blendPixel(o % this.width, Math.floor(o / this.width), color, cover[o]);
    return this;
  }

  /** Filled triangle with a soft one-pixel edge. */
  fillTriangle(ax: number, ay: number, bx: number, by: number, cx: number, cy: number, color: RGBA): this {
    if (![ax, ay, bx, by, cx, cy].every(Number.isFinite)) return this;
    // Orient counter-clockwise (in y-down pixel space) so "inside" is where all edge distances are positive.
    const area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
    if (area === 0) return this;
    if (area < 0) [bx, by, cx, cy] = [cx, cy, bx, by];
    const edges: [number, number, number, number][] = [];
    for (const [px, py, qx, qy] of [
      [ax, ay, bx, by],
      [bx, by, cx, cy],
      [cx, cy, ax, ay],
    ]) {
      const len = Math.hypot(qx - px, qy - py);
      edges.push([px, py, (qx - px) / len, (qy - py) / len]);
    }
    const i0 = Math.max(0, Math.floor(Math.min(ax, bx, cx) - 1)),
      i1 = Math.min(this.width - 1, Math.floor(Math.max(ax, bx, cx) + 1));
    const j0 = Math.max(0, Math.floor(Math.min(ay, by, cy) - 1)),
      j1 = Math.min(this.height - 1, Math.floor(Math.max(ay, by, cy) + 1));
    for (let j = j0; j <= j1; j++) {
      for (let i = i0; i <= i1; i++) {
        const px = i + 0.5,
          py = j + 0.5;
        let inside = Infinity;
        for (const [ex, ey, ux, uy] of edges) inside = Math.min(inside, ux * (py - ey) - uy * (px - ex));
        const cover = inside + 0.5;
        if (cover > 0) this.blendPixel(i, j, color, cover);
      }
    }
    return this;
  }

  /** Arrow from (x0, y0) to its tip (x1, y1): a shaft plus a filled head. */
  arrow(x0: number, y0: number, x1: number, y1: number, color: RGBA, opts: ArrowOptions = {}): this {
    const len = Math.hypot(x1 - x0, y1 - y0);
    if (!(len > 0)) return this;
    const width = opts.width ?? 1.25;
    const headLength = Math.min(opts.headLength ?? Math.max(4, 3 * width), len * 0.6);
    const headWidth = opts.headWidth ?? headLength * 0.8;
    const ux = (x1 - x0) / len,
      uy = (y1 - y0) / len;
    const bx = x1 - ux * headLength,
      by = y1 - uy * headLength;
    this.line(x0, y0, bx + ux * 0.5, by + uy * 0.5, color, width);
    const nx = -uy * headWidth * 0.5,
      ny = ux * headWidth * 0.5;
    return this.fillTriangle(x1, y1, bx + nx, by + ny, bx - nx, by - ny, color);
  }

  /** Draws text with its top edge at y; returns the width in pixels. Unknown characters draw as "?". */
  text(str: string, x: number, y: number, color: RGBA, opts: TextOptions = {}): number {
    const scale = Math.max(1, Math.round(opts.scale ?? 1));
    const width = textWidth(str, scale);
    let pen = Math.round(opts.align === "center" ? x - width / 2 : opts.align === "right" ? x - width : x);
    const top = Math.round(y);
    for (const ch of str) {
      const rows = glyphRows(ch);
      const drop = glyphDrop(ch);
      for (let r = 0; r < GLYPH_HEIGHT; r++) {
        const bits = rows[r];
        if (bits === 0) continue;
        for (let c = 0; c < GLYPH_WIDTH; c++) {
          if (bits & (1 << (GLYPH_WIDTH - 1 - c))) this.fillRect(pen + c * scale, top + (r + drop) * scale, scale, scale, color);
        }
      }
      pen += (GLYPH_WIDTH + 1) * scale;
    }
    return width;
  }

  /** Copies src onto this raster with its top-left at (x, y), blending by src alpha. */
  blit(src: Raster, x: number, y: number): this {
    const ox = Math.round(x),
      oy = Math.round(y);
    for (let j = 0; j < src.height; j++) {
      const ty = oy + j;
      if (ty < 0 || ty >= this.height) continue;
      for (let i = 0; i < src.width; i++) {
        const tx = ox + i;
        if (tx < 0 || tx >= this.width) continue;
        const s = (j * src.width + i) * 4;
        const sd = src.data;
        if (sd[s + 3] === 255) {
          const t = (ty * this.width + tx) * 4;
          this.data[t] = sd[s];
          this.data[t + 1] = sd[s + 1];
          this.data[t + 2] = sd[s + 2];
          this.data[t + 3] = 255;
        } else {
          this.blendPixel(tx, ty, [sd[s], sd[s + 1], sd[s + 2], sd[s + 3]]);
        }
      }
    }
    return this;
  }

  toPng(): Buffer {
    return encodePng(this);
  }
}
