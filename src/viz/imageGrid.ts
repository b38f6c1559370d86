// Images laid out in a grid with optional captions.
import { INK, Raster, hexColor, textWidth, type RGBA } from "./raster.js";

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
  const scale = opts.scale ?? 2,
    pad = opts.pad ?? 2;
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
    throw new RangeError(
      `imageGrid: got ${images.length} values, expected n*height*width*channels = ${n}*${h}*${w}*${c} = ${n * h * w * c}`,
    );
  }
  if (!(cols >= 1)) throw new RangeError(`imageGrid: cols must be >= 1, got ${cols}`);
  const scale = Math.max(1, Math.round(opts.scale ?? 2)),
    pad = opts.pad ?? 2;
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
