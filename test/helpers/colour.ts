// Tiny folder:DIR datasets of PNGs for tests: colour (or grey) images whose class shows in blue (class 0 blue-ish, class 1
// yellow-ish), and flat grey levels.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encodePng } from "../../src/viz/png.js";

/** Pixel (x, y) of image i of class k: red from x, green from y, blue from the class (grey: all three equal). */
export function rgbOf(k: number, i: number, x: number, y: number, grey: boolean): [number, number, number] {
  const r = (x * 30 + i * 7) & 255;
  return grey ? [r, r, r] : [r, (y * 30 + i * 11) & 255, k === 0 ? 40 : 220];
}

/** folder:DIR of PNGs, `perClass` per class, of the given size (per image: sizes[i % sizes.length]). */
export function colourFolder(
  root: string,
  opts: { classes?: string[]; perClass?: number; grey?: boolean; sizes?: [number, number][] } = {},
): string {
  const dir = join(root, "data");
  const classes = opts.classes ?? ["blue", "yellow"];
  const sizes = opts.sizes ?? [[8, 8]];
  classes.forEach((c, k) => {
    mkdirSync(join(dir, c), { recursive: true });
    for (let i = 0; i < (opts.perClass ?? 4); i++) {
      const [w, h] = sizes[i % sizes.length];
      const data = new Uint8Array(w * h * 4).fill(255);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set(rgbOf(k, i, x, y, opts.grey ?? false), 4 * (y * w + x));
      writeFileSync(join(dir, c, `${i}.png`), encodePng({ width: w, height: h, data }));
    }
  });
  return dir;
}

/** folder:DIR of 4x4 grey PNGs in classes c0, c1, ...: class k's image i is all levels[k] + 10 i (at most 255). Tiny, so image training stays fast. */
export function levelFolder(dir: string, levels: number[], perClass = 4): string {
  levels.forEach((v, k) => {
    mkdirSync(join(dir, `c${k}`), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const data = new Uint8Array(4 * 4 * 4).fill(Math.min(255, v + 10 * i));
      for (let j = 3; j < data.length; j += 4) data[j] = 255;
      writeFileSync(join(dir, `c${k}`, `${i}.png`), encodePng({ width: 4, height: 4, data }));
    }
  });
  return dir;
}
