// PNG encoding through pngjs (pictures out; reading PNG datasets is src/data/png.ts).
import { PNG } from "pngjs";

/** Anything with RGBA bytes, e.g. a Raster. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8ClampedArray | Uint8Array;
}

export function encodePng(image: RgbaImage): Buffer {
  const png = new PNG({ width: image.width, height: image.height });
  png.data = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  return PNG.sync.write(png);
}
