// PNG decoding through pngjs for image datasets (always 8-bit RGBA, whatever the file's format, or
// luminance). Writing pictures is src/viz/png.ts.
import { PNG } from "pngjs";
import { UserError } from "../core/errors.js";

/**
 * Largest side decoded. Far above any image the models can train on in the engine's 4 GiB, yet a
 * 4096x4096 RGBA decode is only 64 MiB; a small file declaring 60000x60000 would take 14 GB.
 */
export const MAX_PNG_SIDE = 4096;

/** Width and height from the IHDR chunk (always first: bytes 16-23 after the signature and chunk header), or null. */
export function pngDimensions(buf: Uint8Array): { width: number; height: number } | null {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (buf.length < 24 || sig.some((b, i) => buf[i] !== b)) return null;
  if (String.fromCharCode(buf[12], buf[13], buf[14], buf[15]) !== "IHDR") return null;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

/** Decodes any PNG (palette, grey, 16-bit, alpha) to 8-bit RGBA; a file that is not a PNG is a UserError. */
export function decodePng(
  buf: Uint8Array,
  source = "image",
  maxSide = MAX_PNG_SIDE,
): { width: number; height: number; data: Uint8ClampedArray } {
  // Checked before decoding: a decompression bomb declares huge dimensions in a few bytes.
  const dims = pngDimensions(buf);
  if (dims && (dims.width > maxSide || dims.height > maxSide)) {
    throw new UserError(
      `${source} declares ${dims.width}x${dims.height} pixels, above the ${maxSide}x${maxSide} limit for decoded images; resize it (training images are usually 28x28 to 64x64)`,
    );
  }
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new UserError(`${source} is not a readable PNG (${why}); pass a .png file (convert JPEG/WebP first)`);
  }
  return { width: png.width, height: png.height, data: new Uint8ClampedArray(png.data) };
}

/**
 * Decodes a PNG to luminance in [0, 1] (Rec. 601 weights). Transparent pixels are composited over
 * `background` (default 0 = black, the MNIST background, so a white digit on transparency stays a digit).
 */
export function decodePngGray(
  buf: Uint8Array,
  opts: { background?: number; source?: string } = {},
): { width: number; height: number; pixels: Float32Array } {
  const { width, height, data } = decodePng(buf, opts.source);
  const bg = opts.background ?? 0;
  const pixels = new Float32Array(width * height);
  for (let p = 0; p < pixels.length; p++) {
    const o = 4 * p;
    const lum = (0.299 * data[o] + 0.587 * data[o + 1] + 0.114 * data[o + 2]) / 255;
    const a = data[o + 3] / 255;
    pixels[p] = lum * a + bg * (1 - a);
  }
  return { width, height, pixels };
}
