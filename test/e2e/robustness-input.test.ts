// Bad input as a careless user gives it, through the CLI: every case fails before any training
// starts, with a one-line message naming the problem and the fix (exit 2 for a bad flag value,
// 1 for bad files), and every file the user had is still there byte for byte.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { runCli, tempDir, snapshotTree, assertTreeKept, type CliResult } from "../helpers/cli.js";
import { colourFolder } from "../helpers/colour.js";
import { encodeIdx } from "../../src/data/idx.js";

const made: string[] = [];
after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));
function temp(): string {
  const d = tempDir("fm-input-");
  made.push(d);
  return d;
}

const TINY_2D = ["--steps", "5", "--hidden", "16", "--depth", "1", "--batch-size", "32", "--nfe", "4"];
const TINY_UNET = [
  "--steps",
  "1",
  "--channels",
  "8,8",
  "--groups",
  "4",
  "--time-emb-dim",
  "8",
  "--batch-size",
  "4",
  "--per-class",
  "1",
  "--nfe",
  "1",
  "--solver",
  "euler",
];

/** One line of error, no stack trace, and no sign that a training step ran or a checkpoint was written. */
function assertFailedFast(r: CliResult, code: number, message: RegExp, out?: string): void {
  assert.equal(r.code, code, `exit ${r.code}\n${r.err}`);
  assert.match(r.err, message);
  assert.doesNotMatch(r.err, /\n\s+at /, "no stack trace");
  assert.doesNotMatch(r.out + r.err, /trained|train2d \d|train-image \d|resuming/, "no training ran");
  if (out) assert.ok(!existsSync(join(out, "ckpt.json")) && !existsSync(join(out, "ckpt.safetensors")), "no checkpoint written");
}

/** A folder:DIR dataset of 8x8 grey PNGs, two per class. */
const pngFolder = (root: string, classes: string[]): string => colourFolder(root, { classes, perClass: 2, grey: true });

test("an --out that is a file, or inside one, is refused before training (exit 2)", () => {
  const root = temp();
  writeFileSync(join(root, "notes.txt"), "my notes\n");
  const before = snapshotTree(root);
  for (const out of [join(root, "notes.txt"), join(root, "notes.txt", "run")]) {
    const r = runCli(["train2d", "--dataset", "moons", "--out", out, ...TINY_2D]);
    assertFailedFast(r, 2, /--out.*is (a file|inside .*which is a file).*pick a folder/);
  }
  const img = runCli(["train-image", "--dataset", `folder:${root}`, "--out", join(root, "notes.txt"), ...TINY_UNET]);
  assertFailedFast(img, 2, /--out.*is a file/);
  const sample = runCli(["sample2d", "--ckpt", join(root, "none"), "--out", join(root, "notes.txt")]);
  assertFailedFast(sample, 2, /--out.*is a file/);
  assertTreeKept(before, root);
});

test("--n 1 and --frames 1 are refused before training or loading anything (exit 2)", () => {
  const root = temp();
  const out = join(root, "run");
  assertFailedFast(
    runCli(["train2d", "--dataset", "moons", "--out", out, ...TINY_2D, "--n", "1"]),
    2,
    /--n.*at least 2 samples.*got "1"/,
    out,
  );
  assertFailedFast(
    runCli(["train2d", "--dataset", "moons", "--out", out, ...TINY_2D, "--frames", "1"]),
    2,
    /--frames.*from 2 to 1000.*got "1"/,
    out,
  );
  assertFailedFast(runCli(["sample2d", "--ckpt", out, "--frames", "1"]), 2, /--frames.*from 2 to 1000/);
  assertFailedFast(runCli(["sample-image", "--ckpt", out, "--frames", "1"]), 2, /--frames.*from 2 to 1000/);
  assertFailedFast(runCli(["compare", "--dataset", "moons", "--n", "1", "--out", out]), 2, /--n.*at least 2/);
  assertFailedFast(runCli(["loglik", "--ckpt", out, "--n", "1"]), 2, /--n.*at least 2/);
  assert.ok(!existsSync(out), "nothing created");
});

test("models, batches and sample sets too large for the engine are refused with the estimate, before training", () => {
  const root = temp();
  const out = join(root, "run");
  const cases: [string[], RegExp][] = [
    [["--depth", "3", "--hidden", "100000"], /--hidden/],
    [["--batch-size", "1e8"], /--batch-size/],
    [["--n", "1e8"], /sampling 100000000 points.*--n/],
  ];
  for (const [flags, fix] of cases) {
    // jax-js trains in a 4 GiB Wasm heap; onnxruntime in this machine's memory.
    const r = runCli(["train2d", "--dataset", "moons", "--out", out, ...TINY_2D, ...flags, "--backend", "jax"]);
    assertFailedFast(r, 1, /needs about [\d.]+ [GT]iB of engine memory, more than the engine's 4\.0 GiB limit/, out);
    assert.match(r.err, fix);
  }
  const ort = runCli(["train2d", "--dataset", "moons", "--out", out, ...TINY_2D, "--depth", "3", "--hidden", "100000", "--backend", "ort"]);
  assertFailedFast(ort, 1, /needs about [\d.]+ [GT]iB of memory on onnxruntime, more than this machine's [\d.]+ [GM]iB; .*--hidden/, out);
  const data = pngFolder(root, ["a", "b"]);
  const before = snapshotTree(root);
  const img = runCli(["train-image", "--dataset", `folder:${data}`, "--out", out, ...TINY_UNET, "--batch-size", "1000000"]);
  assertFailedFast(
    img,
    1,
    /training UNet \[.*\] .* needs about [\d.]+ [GT]iB of memory on onnxruntime, more than this machine's .*--batch-size/,
    out,
  );
  const samples = runCli(["train-image", "--dataset", `folder:${data}`, "--out", out, ...TINY_UNET, "--per-class", "10000000"]);
  assertFailedFast(samples, 1, /sampling 20000000 images .* needs about .* limit.*--per-class/, out);
  assertTreeKept(before, root);
});

test("an unknown dataset is a bad flag value (exit 2) with a did-you-mean, for 2-D and image commands", () => {
  const toy = runCli(["train2d", "--dataset", "checkerbord", "--steps", "5"]);
  assertFailedFast(toy, 2, /unknown dataset "checkerbord" \(did you mean "checkerboard"\?\)/);
  const img = runCli(["train-image", "--dataset", "mnsit", "--steps", "5"]);
  assertFailedFast(img, 2, /unknown image dataset "mnsit" \(did you mean "mnist"\?\).*folder:DIR/);
});

test("folder datasets: a folder named x.png, broken or escaping links and empty classes are refused with the path", () => {
  const cases: [string, (data: string) => void, RegExp][] = [
    ["folder named like an image", (d) => mkdirSync(join(d, "a", "x.png")), /a\/x\.png is a folder, not a PNG image; rename or move it/],
    [
      "broken symlink",
      (d) => symlinkSync(join(d, "gone.png"), join(d, "b", "x.png")),
      /b\/x\.png is a broken symbolic link .*fix or remove the link/,
    ],
    [
      "class linking out of the dataset",
      (d) => symlinkSync("/etc", join(d, "etc")),
      /etc is a link to \/etc, outside the dataset folder .*copy the images into the folder or remove the link/,
    ],
    ["empty class", (d) => mkdirSync(join(d, "empty")), /class folder .*empty has no \.png files; add images to it or remove it/],
  ];
  for (const [name, breakIt, message] of cases) {
    const root = temp();
    const data = pngFolder(root, ["a", "b"]);
    breakIt(data);
    const before = snapshotTree(root);
    const out = join(root, "run");
    const r = runCli(["train-image", "--dataset", `folder:${data}`, "--out", out, ...TINY_UNET]);
    assertFailedFast(r, 1, message, out);
    assert.ok(!existsSync(out), `${name}: nothing written`);
    assertTreeKept(before, root);
  }
});

/** CRC-32 of a PNG chunk's type and data (the PNG spec's polynomial). */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const out = Buffer.alloc(8 + data.length + 4);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

test("a PNG declaring 60000x60000 pixels is refused from its header, quickly, without decoding", () => {
  const root = temp();
  const data = pngFolder(root, ["a", "b"]);
  const side = 60000;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(side, 0);
  ihdr.writeUInt32BE(side, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  // Real rows of zeros (filter byte + pixels); a full bomb would hold all 60000 at ~1000:1.
  const rows = deflateSync(Buffer.alloc(64 * (side + 1)));
  const png = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", rows),
    chunk("IEND", new Uint8Array(0)),
  ]);
  writeFileSync(join(data, "a", "0.png"), png);
  const before = snapshotTree(root);
  const out = join(root, "run");
  const r = runCli(["train-image", "--dataset", `folder:${data}`, "--out", out, ...TINY_UNET], { timeoutMs: 20_000 });
  assert.equal(r.signal, null, "finished within 20 s");
  assertFailedFast(r, 1, /a\/0\.png declares 60000x60000 pixels, above the 4096x4096 limit .*resize it/, out);
  assertTreeKept(before, root);
});

test("sparse IDX labels (0 and 255 only) train but warn how many of the 256 classes are empty", () => {
  const root = temp();
  const dir = join(root, "idx");
  mkdirSync(dir);
  const n = 4;
  const pixels = Uint8Array.from({ length: n * 8 * 8 }, (_, i) => (i * 13) & 255);
  writeFileSync(join(dir, "train-images-idx3-ubyte"), encodeIdx([n, 8, 8], pixels));
  writeFileSync(join(dir, "train-labels-idx1-ubyte"), encodeIdx([n], Uint8Array.from([0, 255, 0, 255])));
  const before = snapshotTree(root);
  const r = runCli(["train-image", "--dataset", `idx:${dir}`, "--out", join(root, "run"), ...TINY_UNET, "--guidance", "1"]);
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.err,
    /warning: .*labels span 0\.\.255, so the model gets 256 classes, but only 2 occur \(254 classes have no images\); renumber the labels 0\.\.1/,
  );
  assertTreeKept(before, root);
});

test("seeds beyond 32 bits and non-finite or huge guidance weights are refused as bad flags (exit 2)", () => {
  const root = temp();
  const out = join(root, "run");
  assertFailedFast(
    runCli(["train2d", "--dataset", "moons", "--out", out, ...TINY_2D, "--seed", "4294967296"]),
    2,
    /--seed.*from 0 to 4294967295.*got "4294967296"/,
    out,
  );
  for (const w of ["1e308", "NaN"]) {
    assertFailedFast(runCli(["sample-image", "--ckpt", out, "--guidance", w]), 2, new RegExp(`--guidance.*from -20 to 20.*got "${w}"`));
  }
  assertFailedFast(
    runCli(["train-image", "--dataset", "mnist", "--out", out, "--guidance", "1e308"]),
    2,
    /--guidance.*from -20 to 20/,
    out,
  );
  assertFailedFast(runCli(["reflow", "--teacher", out, "--guidance", "-Infinity"]), 2, /--guidance.*from -20 to 20/);
  assert.ok(!existsSync(out), "nothing created");
});
