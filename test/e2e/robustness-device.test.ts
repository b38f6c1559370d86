// `--device` as a user meets it when it cannot work: a clear one-line error, a non-zero exit, and
// nothing the user had touched.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertTreeKept, runCli, snapshotTree, tempDir } from "../helpers/cli.js";

const TINY = [
  "--dataset",
  "moons",
  "--steps",
  "3",
  "--hidden",
  "16",
  "--depth",
  "1",
  "--batch-size",
  "32",
  "--n",
  "50",
  "--nfe",
  "4",
  "--frames",
  "2",
];

function userFolder(): string {
  const dir = tempDir("fm-device-");
  writeFileSync(join(dir, "notes.txt"), "mine");
  return dir;
}

test("--device webgpu without a usable GPU driver fails with one line and leaves the folder alone", () => {
  const dir = userFolder();
  const before = snapshotTree(dir);
  // An empty driver list: Vulkan finds no device, as on a machine without a GPU driver.
  const env = { ...process.env, VK_ICD_FILENAMES: join(dir, "no-such-icd.json"), LD_LIBRARY_PATH: "" };
  const r = runCli(["train2d", ...TINY, "--out", dir, "--device", "webgpu"], { env });
  assert.equal(r.code, 1, r.err);
  const line = r.err.split("\n").find((l) => l.startsWith("error: ")) ?? "";
  assert.match(line, /^error: (WebGPU is not available here: no GPU adapter was found|--device webgpu needs the "webgpu" package)/);
  // Dawn's own warning (why Vulkan gave no device) may precede it; no JavaScript stack trace.
  assert.doesNotMatch(r.err, /flowmatch failed|\.ts:\d+/, "no stack trace");
  assertTreeKept(before, dir);
  assert.deepEqual([...snapshotTree(dir).keys()], ["notes.txt"], "nothing written");
});

test("--device with a command or backend it cannot drive is refused before any work", () => {
  const dir = userFolder();
  const before = snapshotTree(dir);
  const ort = runCli(["train2d", ...TINY, "--out", dir, "--backend", "ort", "--device", "webgpu"]);
  assert.equal(ort.code, 1);
  assert.match(
    ort.err,
    /^error: --device webgpu runs jax-js, but --backend ort trains on onnxruntime's CPU: use --backend jax, or drop --device$/m,
  );
  const onnx = runCli(["sample-image", "--ckpt", join(dir, "none"), "--runtime", "onnx", "--device", "wasm"]);
  assert.equal(onnx.code, 1);
  assert.match(
    onnx.err,
    /^error: --device wasm runs jax-js, but --runtime onnx samples on onnxruntime's CPU: use --runtime engine, or drop --device$/m,
  );
  const serve = runCli(["serve", "--build-only", "--out", join(dir, "web"), "--device", "webgpu"]);
  assert.equal(serve.code, 1);
  assert.match(serve.err, /--device does not apply to serve.*\?device=webgpu/);
  const bad = runCli(["--device", "cuda", "train2d", ...TINY, "--out", dir]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--device.*cuda.*is invalid.*wasm, webgpu/);
  assertTreeKept(before, dir);
  assert.deepEqual([...snapshotTree(dir).keys()], ["notes.txt"]);
});
