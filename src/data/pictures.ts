// Picture-shaped 2-D datasets (keishihara/flow-matching's "siggraph" and "invertocat" sets, and its
// Gaussian "mixture"): points drawn with density proportional to a picture's darkness, from any PNG
// (`image:PATH.png`) or from a word drawn with the project's 5x7 bitmap font (`text:WORD`). The
// picture is fitted into [-4, 4]^2 keeping its aspect ratio, y up. This module runs in the browser
// too, so reading PNG files lives in the Node-only ./pictureFiles.ts, which registers its reader.
import { UserError } from "../core/errors.js";
import type { Rng } from "../core/rng.js";
import { GLYPH_HEIGHT, GLYPH_WIDTH, glyphDrop, glyphRows } from "../viz/font.js";

/** A picture as weights per pixel (row-major, row 0 at the top); darker = heavier. */
export interface Bitmap {
  width: number;
  height: number;
  weights: Float32Array;
}

/** Half the side of the square the picture is fitted into. */
const HALF = 4;

/** Characters the font draws (anything else would silently become "?"). */
const FONT_CHARS = /^[A-Za-z0-9 .,:;!?+\-=*/()'"%#&_<>[\]]+$/;

export function checkTextSpec(word: string): string {
  if (word.length === 0 || word.length > 32) throw new UserError(`text: needs a word of 1 to 32 characters, e.g. text:FLOW; got "${word}"`);
  if (!FONT_CHARS.test(word) || word.trim() === "")
    throw new UserError(`text:${word} has characters the built-in font cannot draw; use letters, digits and common punctuation`);
  return word;
}

/** The word in the 5x7 font, 1 px between letters, 2 px of descender room: lit pixels weigh 1. */
export function textBitmap(word: string): Bitmap {
  checkTextSpec(word);
  const chars = [...word];
  const width = chars.length * (GLYPH_WIDTH + 1) - 1;
  const height = GLYPH_HEIGHT + 2;
  const weights = new Float32Array(width * height);
  chars.forEach((ch, k) => {
    const rows = glyphRows(ch);
    const drop = glyphDrop(ch);
    rows.forEach((bits, r) => {
      for (let c = 0; c < GLYPH_WIDTH; c++) {
        if (bits & (1 << (GLYPH_WIDTH - 1 - c))) weights[(r + drop) * width + k * (GLYPH_WIDTH + 1) + c] = 1;
      }
    });
  });
  return { width, height, weights };
}

/** Darkness (1 - luminance in [0, 1]) as weights; a picture with nothing dark is refused. */
export function darknessBitmap(width: number, height: number, luminance: Float32Array, source: string): Bitmap {
  const weights = Float32Array.from(luminance, (v) => 1 - v);
  if (!weights.some((w) => w > 1e-3))
    throw new UserError(`${source} has no dark pixels to draw points from; use a picture with dark shapes on a light background`);
  return { width, height, weights };
}

const bitmaps = new Map<string, Bitmap>();
let readImage: ((path: string) => Bitmap) | null = null;

/** Installs the PNG file reader (./pictureFiles.ts does, in Node). */
export function registerImageReader(read: (path: string) => Bitmap): void {
  readImage = read;
}

/** The bitmap of an image: path, read once per process. */
export function imageBitmap(path: string): Bitmap {
  const cached = bitmaps.get(path);
  if (cached) return cached;
  if (!/\.png$/i.test(path)) throw new UserError(`image:${path} must name a .png file`);
  if (!readImage)
    throw new UserError(
      `image:${path} needs a PNG reader: in Node, import "src/data/pictureFiles.js" first; browsers cannot read image: datasets`,
    );
  const bitmap = readImage(path);
  bitmaps.set(path, bitmap);
  return bitmap;
}

/**
 * n points with density proportional to the bitmap's weights: a pixel drawn by weight, then a
 * uniform position inside it. The longer side spans [-4, 4]; the picture is centred.
 */
export function sampleBitmap(bitmap: Bitmap, n: number, rng: Rng): Float32Array {
  const { width, height, weights } = bitmap;
  const cdf = new Float64Array(weights.length);
  let acc = 0;
  for (let p = 0; p < weights.length; p++) cdf[p] = acc += Math.max(0, weights[p]);
  const scale = (2 * HALF) / Math.max(width, height);
  const out = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const u = rng.uniform() * acc;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    const col = lo % width;
    const row = Math.floor(lo / width);
    out[2 * i] = (col + rng.uniform() - width / 2) * scale;
    out[2 * i + 1] = (height / 2 - row - rng.uniform()) * scale;
  }
  return out;
}

// keishihara's "mixture": a few Gaussians of different sizes and weights, here 5 fixed components.
const MIXTURE = [
  { w: 0.3, mx: -2, my: -2, sx: 0.6, sy: 0.3 },
  { w: 0.2, mx: 2, my: -1.5, sx: 0.4, sy: 0.8 },
  { w: 0.2, mx: 0, my: 2.5, sx: 0.9, sy: 0.35 },
  { w: 0.15, mx: -2.5, my: 1.5, sx: 0.3, sy: 0.3 },
  { w: 0.15, mx: 2.5, my: 2, sx: 0.5, sy: 0.5 },
];

/** The mixture's components (weights, means, per-axis stds), for tests and densities. */
export const MIXTURE_COMPONENTS: readonly { w: number; mx: number; my: number; sx: number; sy: number }[] = MIXTURE;

export function sampleMixture(n: number, rng: Rng): Float32Array {
  const out = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    let u = rng.uniform();
    let c = MIXTURE[MIXTURE.length - 1];
    for (const m of MIXTURE) {
      if (u < m.w) {
        c = m;
        break;
      }
      u -= m.w;
    }
    out[2 * i] = c.mx + c.sx * rng.normal();
    out[2 * i + 1] = c.my + c.sy * rng.normal();
  }
  return out;
}
