// Colour datasets: cifar10:DIR in the official binary format (written here in exactly that format,
// small), folder:DIR of mixed sizes with --resize / --center-crop, and --horizontal-flip batches.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli, snapshotTree, assertTreeKept, tempDir } from "../../helpers/cli.js";
import { encodePng } from "../../../src/viz/png.js";
import { CIFAR10_URL, loadImageDataset, type ImageDataset } from "../../../src/data/images.js";
import { imageBatches } from "../../../src/pipelines/imageBatches.js";
import { getTimeSampler } from "../../../src/core/timeSamplers.js";
import { UserError } from "../../../src/core/errors.js";

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
function temp(): string {
  const d = tempDir("fm-cdata-");
  roots.push(d);
  return d;
}
const isUserError = (re: RegExp) => (e: unknown) => e instanceof UserError && re.test(e.message);

const CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
/** Byte of record r's channel c at pixel p (deterministic, so tests can check any value). */
const byteOf = (r: number, c: number, p: number) => (r * 13 + c * 101 + p * 7) & 255;

/** CIFAR-10 binary records: label byte, then 1024 R, 1024 G, 1024 B bytes. */
function records(labels: number[], first: number): Buffer {
  const buf = Buffer.alloc(labels.length * 3073);
  labels.forEach((label, i) => {
    buf[i * 3073] = label;
    for (let c = 0; c < 3; c++) for (let p = 0; p < 1024; p++) buf[i * 3073 + 1 + c * 1024 + p] = byteOf(first + i, c, p);
  });
  return buf;
}

function cifarFolder(root: string): string {
  const dir = join(root, "cifar-10-batches-bin");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "batches.meta.txt"), CLASSES.join("\n") + "\n\n");
  for (let b = 1; b <= 5; b++) writeFileSync(join(dir, `data_batch_${b}.bin`), records([b, (b + 3) % 10], 2 * (b - 1)));
  writeFileSync(join(dir, "test_batch.bin"), records([9, 0, 4], 100));
  return dir;
}

const unit = (b: number) => Math.fround((b / 255) * 2 - 1);

test("cifar10:DIR reads the binary version: planar RGB to NHWC, labels, class names, both splits, --limit", async () => {
  const dir = cifarFolder(temp());
  const ds = await loadImageDataset(`cifar10:${dir}`);
  assert.deepEqual([ds.n, ds.height, ds.width, ds.channels, ds.numClasses], [10, 32, 32, 3, 10]);
  assert.deepEqual(ds.classNames, CLASSES);
  assert.deepEqual([...ds.labels], [1, 4, 2, 5, 3, 6, 4, 7, 5, 8]);
  // Record 7 (batch 4's second), pixel (x=5, y=3): NHWC index ((7*32 + 3)*32 + 5)*3 + c.
  for (let c = 0; c < 3; c++) assert.equal(ds.images[((7 * 32 + 3) * 32 + 5) * 3 + c], unit(byteOf(7, c, 3 * 32 + 5)));
  const testSplit = await loadImageDataset(`cifar10:${dir}`, { split: "test" });
  assert.deepEqual([...testSplit.labels], [9, 0, 4]);
  assert.equal(testSplit.images[(1 * 1024 + 1) * 3], unit(byteOf(101, 0, 1)), "record 1 of test_batch.bin, pixel 1, red");
  assert.equal((await loadImageDataset(`cifar10:${dir}`, { limit: 3 })).n, 3);
});

test("cifar10:DIR refuses a missing folder (saying where to get the files), missing batches, truncated files and bad labels", async () => {
  const root = temp();
  await assert.rejects(
    loadImageDataset(`cifar10:${join(root, "nope")}`),
    isUserError(new RegExp(`does not exist.*${CIFAR10_URL.replace(/[.~/]/g, "\\$&")}.*--dataset cifar10:`)),
  );
  await assert.rejects(loadImageDataset("cifar10"), isUserError(/cifar-10-binary\.tar\.gz.*cifar10:PATH/));
  const dir = cifarFolder(root);
  rmSync(join(dir, "data_batch_3.bin"));
  await assert.rejects(loadImageDataset(`cifar10:${dir}`), isUserError(/has no data_batch_3\.bin/));
  writeFileSync(join(dir, "data_batch_3.bin"), records([1], 0).subarray(0, 3000));
  await assert.rejects(
    loadImageDataset(`cifar10:${dir}`),
    isUserError(/data_batch_3\.bin is 3000 bytes, not a whole number of 3073-byte records/),
  );
  writeFileSync(join(dir, "data_batch_3.bin"), records([1, 10], 0));
  await assert.rejects(
    loadImageDataset(`cifar10:${dir}`),
    isUserError(/data_batch_3\.bin: record 1 has label 10, out of range for the 10 classes/),
  );
  rmSync(join(dir, "batches.meta.txt"));
  await assert.rejects(loadImageDataset(`cifar10:${dir}`), isUserError(/no batches\.meta\.txt/));
  await assert.rejects(loadImageDataset(`cifar10:${dir}`, { resize: 16 }), isUserError(/--resize applies to folder:DIR datasets/));
});

test("train-image --dataset cifar10:MISSING exits 1 with the download hint and leaves the folder as it was", () => {
  const root = temp();
  writeFileSync(join(root, "notes.txt"), "mine\n");
  const before = snapshotTree(root);
  const r = runCli(["train-image", "--dataset", `cifar10:${join(root, "cifar")}`, "--steps", "1", "--out", join(root, "run")], {
    cwd: root,
  });
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /cifar-10-binary\.tar\.gz/);
  assert.equal(r.err.trim().split("\n").length, 1, "one line");
  assertTreeKept(before, root);
});

/** A folder:DIR with one 16x12 image (2x2 blocks of one colour each) and one 8x8. */
function mixedFolder(root: string): string {
  const dir = join(root, "mixed");
  mkdirSync(join(dir, "a"), { recursive: true });
  const big = new Uint8Array(16 * 12 * 4).fill(255);
  for (let y = 0; y < 12; y++) for (let x = 0; x < 16; x++) big.set([(x >> 1) * 30, (y >> 1) * 40, 200], 4 * (y * 16 + x));
  writeFileSync(join(dir, "a", "big.png"), encodePng({ width: 16, height: 12, data: big }));
  const small = new Uint8Array(8 * 8 * 4).fill(255);
  for (let p = 0; p < 64; p++) small.set([p * 4, 0, 0], 4 * p);
  writeFileSync(join(dir, "a", "small.png"), encodePng({ width: 8, height: 8, data: small }));
  return dir;
}

test("folder:DIR transparency: colour images go over white (with --resize too), an all-grey folder over black", async () => {
  const root = temp();
  // A 4x4 red disc-like colour image: pixel 0 fully transparent, pixel 1 half-transparent red, the rest opaque red.
  const colour = join(root, "colour");
  mkdirSync(join(colour, "a"), { recursive: true });
  const px = new Uint8Array(4 * 4 * 4);
  for (let p = 0; p < 16; p++) px.set([255, 0, 0, p === 0 ? 0 : p === 1 ? 128 : 255], 4 * p);
  writeFileSync(join(colour, "a", "c.png"), encodePng({ width: 4, height: 4, data: px }));
  const c = await loadImageDataset(`folder:${colour}`);
  assert.equal(c.channels, 3);
  assert.deepEqual(Array.from(c.images.subarray(0, 3)), [1, 1, 1], "fully transparent -> white");
  const a = 128 / 255;
  const half = [a + (1 - a), 1 - a, 1 - a].map((v) => v * 2 - 1);
  for (let k = 0; k < 3; k++) assert.ok(Math.abs(c.images[3 + k] - half[k]) < 1e-6, `half-transparent channel ${k}: ${c.images[3 + k]}`);
  assert.deepEqual(Array.from(c.images.subarray(6, 9)), [1, -1, -1]);
  // --resize 2 averages the composited colours: the top-left output pixel covers pixels 0, 1, 4, 5.
  const r = await loadImageDataset(`folder:${colour}`, { resize: 2 });
  const green = (1 + (1 - a) + 0 + 0) / 4;
  assert.ok(Math.abs(r.images[1] - (green * 2 - 1)) < 1e-6, `resized green ${r.images[1]} vs ${green * 2 - 1}`);
  // A white digit on transparency (grey images only) stays a white digit on black.
  const grey = join(root, "grey");
  mkdirSync(join(grey, "a"), { recursive: true });
  const g = new Uint8Array(4 * 4 * 4);
  for (let p = 0; p < 16; p++) g.set([255, 255, 255, p < 8 ? 0 : 255], 4 * p);
  writeFileSync(join(grey, "a", "g.png"), encodePng({ width: 4, height: 4, data: g }));
  const d = await loadImageDataset(`folder:${grey}`);
  assert.equal(d.channels, 1);
  assert.deepEqual(Array.from(d.images.subarray(6, 10)), [-1, -1, 1, 1]);
});

test("folder:DIR of mixed sizes: refused without a flag; --resize N scales the shorter side (area mean) and crops; --center-crop N", async () => {
  const dir = mixedFolder(temp());
  await assert.rejects(
    loadImageDataset(`folder:${dir}`),
    isUserError(/is 8x8 but .*big\.png is 16x12; .*pass --resize N or --center-crop N/),
  );
  const r = await loadImageDataset(`folder:${dir}`, { resize: 6 });
  assert.deepEqual([r.n, r.height, r.width, r.channels], [2, 6, 6, 3]);
  // 16x12 -> 8x6 (each output pixel one 2x2 block), then the centre 6 columns (x 1..6): pixel (0, 0) is block (1, 0).
  assert.ok(Math.abs(r.images[0] - unit(30)) < 1e-6 && Math.abs(r.images[1] - unit(0)) < 1e-6 && Math.abs(r.images[2] - unit(200)) < 1e-6);
  // 8x8 -> 6x6: output pixel (0, 0) covers source [0, 4/3)^2: weights 1, 1/3, 1/3, 1/9 over red 0, 4, 32, 36.
  const expected = (0 * 1 + 4 * (1 / 3) + 32 * (1 / 3) + 36 * (1 / 9)) / (16 / 9);
  assert.ok(Math.abs(r.images[6 * 6 * 3] - unit(expected)) < 1e-5, `${r.images[108]} vs ${unit(expected)}`);
  const c = await loadImageDataset(`folder:${dir}`, { centerCrop: 4 });
  assert.deepEqual([c.height, c.width], [4, 4]);
  // big: x0 = 6, y0 = 4 -> block (3, 2); small: x0 = y0 = 2 -> p = 18.
  assert.ok(Math.abs(c.images[0] - unit(90)) < 1e-6 && Math.abs(c.images[1] - unit(80)) < 1e-6);
  assert.ok(Math.abs(c.images[16 * 3] - unit(18 * 4)) < 1e-6);
  await assert.rejects(
    loadImageDataset(`folder:${dir}`, { centerCrop: 10 }),
    isUserError(/small\.png is 8x8, smaller than --center-crop 10/),
  );
});

test("--horizontal-flip: each image is itself or its mirror, both occur, seeded; noise, times and labels unchanged", () => {
  const n = 8,
    H = 2,
    W = 3,
    C = 3;
  const images = Float32Array.from({ length: n * H * W * C }, (_, i) => i);
  const data: ImageDataset = {
    name: "t",
    images,
    labels: Int32Array.from({ length: n }, (_, i) => i % 2),
    n,
    height: H,
    width: W,
    channels: C,
    numClasses: 2,
    classNames: ["a", "b"],
  };
  const base = { batchSize: 8, seed: 3, labelDropout: 0.2, sampleTimes: getTimeSampler("uniform") };
  const plain = imageBatches(data, base);
  const flip = imageBatches(data, { ...base, horizontalFlip: true });
  const again = imageBatches(data, { ...base, horizontalFlip: true });
  let flipped = 0,
    kept = 0;
  for (let k = 0; k < 4; k++) {
    const a = plain(k),
      b = flip(k),
      c = again(k);
    assert.deepEqual([...b.x1], [...c.x1], "same seed, same flips");
    assert.deepEqual([...b.x0], [...a.x0]);
    assert.deepEqual([...b.t], [...a.t]);
    assert.deepEqual([...b.labels], [...a.labels]);
    const per = H * W * C;
    for (let i = 0; i < 8; i++) {
      const orig = a.x1.subarray(i * per, (i + 1) * per);
      const got = b.x1.subarray(i * per, (i + 1) * per);
      const mirror = new Float32Array(per);
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) for (let ch = 0; ch < C; ch++) mirror[(y * W + x) * C + ch] = orig[(y * W + (W - 1 - x)) * C + ch];
      if (got.every((v, j) => v === orig[j])) kept++;
      else if (got.every((v, j) => v === mirror[j])) flipped++;
      else assert.fail(`batch ${k} image ${i} is neither itself nor its mirror`);
    }
  }
  assert.ok(flipped > 4 && kept > 4, `flipped ${flipped}, kept ${kept}`);
});

test("train-image --resize --horizontal-flip records both in the checkpoint and trains on the resized colour images", () => {
  const root = temp();
  const dir = mixedFolder(root);
  const out = join(root, "run");
  const r = runCli([
    "train-image",
    "--dataset",
    `folder:${dir}`,
    "--resize",
    "8",
    "--horizontal-flip",
    "--channels",
    "4,8",
    "--groups",
    "4",
    "--time-emb-dim",
    "4",
    "--batch-size",
    "2",
    "--steps",
    "2",
    "--per-class",
    "1",
    "--nfe",
    "1",
    "--solver",
    "euler",
    "--backend",
    "jax",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.err);
  const cfg = JSON.parse(readFileSync(join(out, "ckpt.json"), "utf8"));
  assert.deepEqual([cfg.model.height, cfg.model.width, cfg.model.inChannels], [8, 8, 3]);
  assert.equal(cfg.train.resize, 8);
  assert.equal(cfg.train.horizontalFlip, true);
  const again = runCli([
    "train-image",
    "--dataset",
    `folder:${dir}`,
    "--resize",
    "16",
    "--channels",
    "4,8",
    "--groups",
    "4",
    "--time-emb-dim",
    "4",
    "--steps",
    "4",
    "--backend",
    "jax",
    "--resume",
    "--out",
    out,
  ]);
  assert.equal(again.code, 1, again.err);
  assert.match(again.err, /--resize/);
});
