// Animated GIFs from rasters via gifenc.
import * as gifencModule from "gifenc";
import type { GifPalette } from "gifenc";
import type { RgbaImage } from "./png.js";

// gifenc ships CommonJS as "main" (Node ESM sees only a default export holding everything) and an
// ES build as "module" (bundlers see named exports); accept either shape.
const gifenc = (typeof gifencModule.quantize === "function" ? gifencModule : gifencModule.default) as typeof gifencModule.default;

export interface GifOptions {
  /** Delay per frame in milliseconds (GIF stores centiseconds, so it rounds to 10 ms). */
  delayMs: number;
  /** Loop forever (default) or play once. */
  loop?: boolean;
  /**
   * "global" (default): one palette quantised from up to `paletteSampleFrames` evenly spaced
   * frames, so colours do not flicker between frames and the file is smaller. "perFrame": each
   * frame gets its own palette (better for frames whose colours differ a lot).
   */
  palette?: "global" | "perFrame";
  paletteSampleFrames?: number;
  /** Palette size, 2..256 (default 256); fewer colours give smaller files (~30% at 32) with harsher edges. */
  maxColors?: number;
}

export function encodeGif(frames: readonly RgbaImage[], opts: GifOptions): Buffer {
  if (frames.length === 0) throw new RangeError("encodeGif: needs at least one frame");
  const { width, height } = frames[0];
  frames.forEach((f, i) => {
    if (f.width !== width || f.height !== height) {
      throw new RangeError(
        `encodeGif: frame ${i} is ${f.width}x${f.height} but frame 0 is ${width}x${height}; all frames must share one size`,
      );
    }
  });
  const format = "rgb565";
  const maxColors = Math.min(256, Math.max(2, Math.round(opts.maxColors ?? 256)));
  let globalPalette: GifPalette | undefined;
  if ((opts.palette ?? "global") === "global") {
    const k = Math.min(frames.length, Math.max(1, opts.paletteSampleFrames ?? 8));
    const picks = [...new Set(Array.from({ length: k }, (_, i) => Math.round((i * (frames.length - 1)) / Math.max(1, k - 1))))];
    const frameBytes = width * height * 4;
    const sample = new Uint8ClampedArray(picks.length * frameBytes);
    picks.forEach((p, i) => sample.set(frames[p].data, i * frameBytes));
    globalPalette = gifenc.quantize(sample, maxColors, { format });
  }
  const gif = gifenc.GIFEncoder();
  frames.forEach((f, i) => {
    const palette = globalPalette ?? gifenc.quantize(f.data, maxColors, { format });
    const index = gifenc.applyPalette(f.data, palette, format);
    gif.writeFrame(index, width, height, {
      // The first frame's palette becomes the global colour table; later frames reuse it unless per-frame.
      palette: i === 0 || !globalPalette ? palette : undefined,
      delay: opts.delayMs,
      repeat: opts.loop === false ? -1 : 0,
    });
  });
  gif.finish();
  const bytes = gif.bytesView();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
