// Node-only half of the picture datasets: reads image:PATH.png files for src/data/pictures.ts
// (kept apart so the browser bundle never sees fs or pngjs). Importing this module registers it.
import { readFileSync } from "node:fs";
import { UserError } from "../core/errors.js";
import { decodePngGray } from "./png.js";
import { darknessBitmap, registerImageReader, type Bitmap } from "./pictures.js";

export function readImageBitmap(path: string): Bitmap {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new UserError(`cannot read image:${path} (${(err as NodeJS.ErrnoException).code ?? String(err)}); pass the path of a PNG file`);
  }
  // Transparent pixels count as white: a logo on transparency draws the logo.
  const { width, height, pixels } = decodePngGray(bytes, { background: 1, source: path });
  return darknessBitmap(width, height, pixels, path);
}

registerImageReader(readImageBitmap);
