import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../../../src/core/errors.js";
import { mlpFamily } from "../../../src/core/models/mlp.js";
import {
  checkParams,
  decodeSafetensors,
  encodeSafetensors,
  loadCheckpoint,
  saveCheckpoint,
  writeFileAtomic,
  writeFileAtomicSync,
  type CheckpointConfig,
  type HostTensor,
} from "../../../src/io/index.js";

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "flowmatch-io-"));
}

function bytesOf(t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Build a safetensors file by hand from a header object and a data section, per the documented layout. */
function handMade(header: unknown, data: Uint8Array, headerLenOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLenOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function assertUserError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected UserError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

const sampleTensors = (): Record<string, HostTensor> => ({
  // Values chosen to catch lossy conversion: NaN payload, -0, subnormal, extremes.
  "layers.0.weight": { dtype: "F32", shape: [2, 3], data: new Float32Array([1.5, -0, NaN, 1e-45, -3.4028234663852886e38, Math.PI]) },
  f64: { dtype: "F64", shape: [3], data: new Float64Array([Math.E, -Number.MAX_VALUE, 5e-324]) },
  ints: { dtype: "I32", shape: [2, 2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, -7]) },
  bytes: { dtype: "U8", shape: [5], data: new Uint8Array([0, 1, 127, 128, 255]) },
  longs: { dtype: "I64", shape: [2], data: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]) },
  scalar: { dtype: "F32", shape: [], data: new Float32Array([42]) },
  empty: { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
});

test("safetensors round trip is bit-exact for every dtype, with metadata", () => {
  const tensors = sampleTensors();
  const encoded = encodeSafetensors(tensors, { note: "hello", step: "12" });
  const { tensors: back, metadata } = decodeSafetensors(encoded, "mem");
  assert.deepEqual(metadata, { note: "hello", step: "12" });
  assert.deepEqual(Object.keys(back).sort(), Object.keys(tensors).sort());
  for (const [name, t] of Object.entries(tensors)) {
    const b = back[name];
    assert.equal(b.dtype, t.dtype, name);
    assert.deepEqual(b.shape, t.shape, name);
    assert.equal(b.data.constructor, t.data.constructor, name);
    assert.deepEqual(bytesOf(b), bytesOf(t), name);
  }
  // Decoded arrays are copies: writing the file buffer must not change them.
  encoded.fill(0);
  assert.equal((back.ints.data as Int32Array)[3], -7);
});

test("decoded typed arrays are aligned copies even when the input is at an odd offset", () => {
  const encoded = encodeSafetensors({ a: { dtype: "F64", shape: [2], data: new Float64Array([1.25, -2]) } });
  const shifted = new Uint8Array(encoded.length + 1);
  shifted.set(encoded, 1);
  const { tensors } = decodeSafetensors(shifted.subarray(1));
  assert.deepEqual([...(tensors.a.data as Float64Array)], [1.25, -2]);
  // A Node Buffer (what readFile returns) must not leak its shared pool into the tensors.
  const fromBuffer = decodeSafetensors(Buffer.from(encoded)).tensors.a.data;
  assert.equal(fromBuffer.buffer.byteLength, 16);
});

test("header is space-padded to 8 bytes and follows the documented layout", () => {
  // Tensor names of varying length give every padding residue.
  for (let len = 1; len <= 8; len++) {
    const name = "x".repeat(len);
    const encoded = encodeSafetensors({ [name]: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
    const headerLen = Number(new DataView(encoded.buffer).getBigUint64(0, true));
    assert.equal(headerLen % 8, 0);
    const headerText = new TextDecoder().decode(encoded.subarray(8, 8 + headerLen));
    assert.match(headerText, /^\{.*\} *$/);
    assert.ok(headerText.length - headerText.trimEnd().length < 8);
    const header = JSON.parse(headerText) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
    assert.deepEqual(header[name], { dtype: "F32", shape: [2], data_offsets: [0, 8] });
    const data = new Float32Array(encoded.slice(8 + headerLen).buffer);
    assert.deepEqual([...data], [1, 2]);
  }
});

test("decodes a file built by hand (out-of-order offsets, metadata, unpadded header)", () => {
  const data = new Uint8Array(4 + 8);
  const view = new DataView(data.buffer);
  view.setInt32(0, -5, true); // "b" first in the data section
  view.setFloat32(4, 0.5, true);
  view.setFloat32(8, -1.5, true);
  const file = handMade(
    {
      a: { dtype: "F32", shape: [1, 2], data_offsets: [4, 12] },
      __metadata__: { format: "pt" },
      b: { dtype: "I32", shape: [1], data_offsets: [0, 4] },
    },
    data,
  );
  const { tensors, metadata } = decodeSafetensors(file, "hand.safetensors");
  assert.deepEqual(metadata, { format: "pt" });
  assert.deepEqual(tensors.a.shape, [1, 2]);
  assert.deepEqual([...(tensors.a.data as Float32Array)], [0.5, -1.5]);
  assert.deepEqual([...(tensors.b.data as Int32Array)], [-5]);
});

test("corrupt safetensors inputs throw UserErrors naming the file and the defect", () => {
  const good = encodeSafetensors({ w: { dtype: "F32", shape: [300], data: new Float32Array(300) } });
  const src = "checkpoint run/ckpt.safetensors";
  const f32 = (shape: number[], offsets: number[]) => ({ dtype: "F32", shape, data_offsets: offsets });

  assertUserError(() => decodeSafetensors(good.subarray(0, 5), src), /run\/ckpt\.safetensors is corrupt: file has 5 bytes/);
  assertUserError(
    () => decodeSafetensors(good.subarray(0, good.length - 400), src),
    /ends at byte 1200 but the data section has 800 bytes/,
  );
  assertUserError(() => decodeSafetensors(handMade({}, new Uint8Array(0), 1200n), src), /header says 1200 bytes but file has 2/);
  assertUserError(() => decodeSafetensors(handMade({}, new Uint8Array(0), 2n ** 63n), src), /header says \d+ bytes/);
  const badJson = new TextEncoder().encode('{"w": ');
  const bad = new Uint8Array(8 + badJson.length);
  new DataView(bad.buffer).setBigUint64(0, BigInt(badJson.length), true);
  bad.set(badJson, 8);
  assertUserError(() => decodeSafetensors(bad, src), /header is not valid JSON/);
  assertUserError(() => decodeSafetensors(handMade([1, 2], new Uint8Array(0)), src), /not a JSON object/);
  assertUserError(
    () => decodeSafetensors(handMade({ a: f32([2], [0, 8]), b: f32([2], [4, 12]) }, new Uint8Array(12)), src),
    /"a" and "b" overlap/,
  );
  assertUserError(() => decodeSafetensors(handMade({ a: f32([2], [4, 12]) }, new Uint8Array(12)), src), /gap of 4 unused bytes/);
  assertUserError(() => decodeSafetensors(handMade({ a: f32([2], [0, 8]) }, new Uint8Array(10)), src), /2 trailing bytes/);
  assertUserError(
    () => decodeSafetensors(handMade({ a: f32([3], [0, 8]) }, new Uint8Array(8)), src),
    /needs 12 bytes but data_offsets span 8/,
  );
  assertUserError(() => decodeSafetensors(handMade({ a: f32([2], [8, 0]) }, new Uint8Array(8)), src), /data_offsets \[8,0\]/);
  assertUserError(() => decodeSafetensors(handMade({ a: f32([-2], [0, 8]) }, new Uint8Array(8)), src), /shape \[-2\]/);
  assertUserError(
    () => decodeSafetensors(handMade({ a: { dtype: "Q7", shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), src),
    /unknown dtype "Q7"/,
  );
  assertUserError(
    () => decodeSafetensors(handMade({ a: { dtype: "BF16", shape: [1], data_offsets: [0, 2] } }, new Uint8Array(2)), src),
    /dtype BF16, which flowmatch does not read \(supported: F32, F64, I32, U8, I64\)/,
  );
  assertUserError(() => decodeSafetensors(handMade({ __metadata__: { n: 3 } }, new Uint8Array(0)), src), /metadata "n" is not a string/);
  // Every message says how to recover.
  assertUserError(() => decodeSafetensors(good.subarray(0, 5), src), /re-run training .* or pass a valid --ckpt/);
});

test("encodeSafetensors rejects tensors whose data does not match dtype or shape", () => {
  assert.throws(() => encodeSafetensors({ a: { dtype: "F32", shape: [3], data: new Float32Array(2) } }), /needs 3 elements, data has 2/);
  assert.throws(() => encodeSafetensors({ a: { dtype: "F64", shape: [2], data: new Float32Array(2) } }), /does not match dtype F64/);
});

test("writeFileAtomic writes, replaces, creates parent folders and leaves no temp files", async () => {
  const dir = tempDir();
  try {
    const target = join(dir, "nested", "deeper", "file.txt");
    await writeFileAtomic(target, "first");
    await writeFileAtomic(target, new Uint8Array([104, 105]));
    assert.equal(readFileSync(target, "utf8"), "hi");
    writeFileAtomicSync(target, "sync");
    assert.equal(readFileSync(target, "utf8"), "sync");
    assert.deepEqual(readdirSync(join(dir, "nested", "deeper")), ["file.txt"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a failed atomic write keeps the old file and removes its temp file", async () => {
  const dir = tempDir();
  try {
    const target = join(dir, "ckpt.json");
    writeFileSync(target, "old contents");
    // Data the writer rejects after the temp file is already open.
    const poison = { length: 3 } as unknown as Uint8Array;
    await assert.rejects(writeFileAtomic(target, poison));
    assert.throws(() => writeFileAtomicSync(target, poison));
    assert.equal(readFileSync(target, "utf8"), "old contents");
    assert.deepEqual(readdirSync(dir), ["ckpt.json"]);

    // The rename fails when the target is a non-empty folder: the folder survives, no temp is left.
    const blocked = join(dir, "blocked");
    mkdirSync(blocked);
    writeFileSync(join(blocked, "keep"), "x");
    await assert.rejects(writeFileAtomic(blocked, "data"));
    assert.throws(() => writeFileAtomicSync(blocked, "data"));
    assert.deepEqual(readdirSync(dir).sort(), ["blocked", "ckpt.json"]);
    assert.deepEqual(readdirSync(blocked), ["keep"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const config2d = (step: number, runId = `run-${step}`): CheckpointConfig => ({
  format: "flowmatch-checkpoint",
  version: 1,
  kind: "2d",
  step,
  runId,
  model: { dim: 2, hidden: 4, depth: 1, timeEmbDim: 0 },
});

const weights2d = (): Record<string, HostTensor> => ({
  "layers.0.weight": { dtype: "F32", shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i / 7) },
  "layers.0.bias": { dtype: "F32", shape: [4], data: new Float32Array([0.1, 0.2, 0.3, 0.4]) },
  "ema.layers.0.bias": { dtype: "F32", shape: [4], data: new Float32Array([1, 2, 3, 4]) },
  "opt.m.layers.0.bias": { dtype: "F32", shape: [4], data: new Float32Array([-1, -2, -3, -4]) },
});

test("checkpoint save/load round trip through folder, .safetensors and .json paths", async () => {
  const dir = tempDir();
  try {
    const out = join(dir, "run");
    const tensors = weights2d();
    await saveCheckpoint(out, { config: config2d(1234), tensors });
    assert.deepEqual(readdirSync(out).sort(), ["ckpt.json", "ckpt.safetensors"]);
    const json = JSON.parse(readFileSync(join(out, "ckpt.json"), "utf8")) as CheckpointConfig;
    assert.match(String(json.weightsSha256), /^[0-9a-f]{64}$/);

    for (const path of [out, join(out, "ckpt.safetensors"), join(out, "ckpt.json")]) {
      const loaded = await loadCheckpoint(path, { kind: "2d" });
      assert.equal(loaded.config.step, 1234);
      assert.deepEqual(loaded.config.model, { dim: 2, hidden: 4, depth: 1, timeEmbDim: 0 });
      assert.deepEqual(Object.keys(loaded.tensors).sort(), Object.keys(tensors).sort());
      for (const [name, t] of Object.entries(tensors)) assert.deepEqual(bytesOf(loaded.tensors[name]), bytesOf(t), name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loadCheckpoint explains missing files, bad JSON, mismatched weights and wrong kinds", async () => {
  const dir = tempDir();
  try {
    const rejectsUser = (p: Promise<unknown>, pattern: RegExp) =>
      assert.rejects(p, (err: unknown) => {
        assert.ok(err instanceof UserError, `expected UserError, got ${String(err)}`);
        assert.match(err.message, pattern);
        return true;
      });

    await rejectsUser(loadCheckpoint(join(dir, "nope")), /no checkpoint at .*nope.*run training first/);
    const a = join(dir, "a");
    const b = join(dir, "b");
    await saveCheckpoint(a, { config: config2d(1), tensors: weights2d() });
    const other = weights2d();
    (other["layers.0.bias"].data as Float32Array)[0] = 9;
    await saveCheckpoint(b, { config: config2d(2), tensors: other });

    // Weights of run b paired with the config of run a.
    writeFileSync(join(a, "ckpt.safetensors"), readFileSync(join(b, "ckpt.safetensors")));
    await rejectsUser(loadCheckpoint(a), /weights .*a\/ckpt\.safetensors do not belong to this config/);

    // A save killed between the weights rename and the config rename: same run, newer weights.
    const d = join(dir, "d");
    await saveCheckpoint(d, { config: config2d(100, "same-run"), tensors: weights2d() });
    const oldConfig = readFileSync(join(d, "ckpt.json"));
    await saveCheckpoint(d, { config: config2d(200, "same-run"), tensors: other });
    writeFileSync(join(d, "ckpt.json"), oldConfig);
    const recovered = await loadCheckpoint(d);
    assert.equal(recovered.config.step, 200, "the newer weights and their embedded config win");
    assert.equal((recovered.tensors["layers.0.bias"].data as Float32Array)[0], 9);

    await rejectsUser(loadCheckpoint(b, { kind: "image", command: "sample-image" }), /is a '2d' model; sample-image needs a 'image' model/);

    rmSync(join(b, "ckpt.safetensors"));
    await rejectsUser(loadCheckpoint(join(b, "ckpt.json")), /weights .*b\/ckpt\.safetensors does not exist; run training first/);

    writeFileSync(join(b, "ckpt.json"), "{ not json");
    await rejectsUser(loadCheckpoint(b), /ckpt\.json is not valid JSON/);
    writeFileSync(join(b, "ckpt.json"), JSON.stringify({ format: "something-else" }));
    await rejectsUser(loadCheckpoint(b), /not a flowmatch checkpoint config/);
    rmSync(join(b, "ckpt.json"));
    await rejectsUser(loadCheckpoint(b), /config .*b\/ckpt\.json does not exist; run training first/);

    // A truncated weights file whose config carries no hash still fails with the decoder's message.
    const c = join(dir, "c");
    await saveCheckpoint(c, { config: config2d(3), tensors: weights2d() });
    const cfg = JSON.parse(readFileSync(join(c, "ckpt.json"), "utf8")) as Record<string, unknown>;
    delete cfg.weightsSha256;
    writeFileSync(join(c, "ckpt.json"), JSON.stringify(cfg));
    const full = readFileSync(join(c, "ckpt.safetensors"));
    writeFileSync(join(c, "ckpt.safetensors"), full.subarray(0, full.length - 4));
    await rejectsUser(loadCheckpoint(c), /checkpoint .*c\/ckpt\.safetensors is corrupt: .*truncated/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("checkParams accepts a match and lists missing, extra and mis-shaped tensors with a hint", () => {
  const expected = { "layers.0.weight": [3, 4], "layers.0.bias": [4] };
  checkParams(expected, weights2d(), "run/ckpt.json"); // ema./opt. entries are fine

  const tensors = weights2d();
  delete tensors["layers.0.bias"];
  tensors["layers.1.weight"] = { dtype: "F32", shape: [4, 2], data: new Float32Array(8) };
  tensors["layers.0.weight"] = { dtype: "F32", shape: [3, 8], data: new Float32Array(24) };
  assertUserError(() => checkParams(expected, tensors, "run/ckpt.json"), /run\/ckpt\.json does not fit the model/);
  assertUserError(() => checkParams(expected, tensors, "run/ckpt.json"), /missing: layers\.0\.bias \(expected \[4\]\)/);
  assertUserError(() => checkParams(expected, tensors, "run/ckpt.json"), /unexpected: layers\.1\.weight \[4, 2\]/);
  assertUserError(
    () => checkParams(expected, tensors, "run/ckpt.json"),
    /wrong shape: layers\.0\.weight is \[3, 8\] in the checkpoint, the model needs \[3, 4\]/,
  );
  // The guess names the flags of the model's family, and no flags without one.
  assertUserError(() => checkParams(expected, tensors, "run/ckpt.json", mlpFamily.shapeFlags), /number of layers \(--depth\).*--hidden/s);
  assertUserError(() => checkParams(expected, tensors, "run/ckpt.json"), /probably differ .*: the number of layers; layer sizes\. Pass/s);

  // A mis-shaped EMA copy is reported too; a caller-supplied hint replaces the guess.
  const emaBad = weights2d();
  emaBad["ema.layers.0.bias"] = { dtype: "F32", shape: [5], data: new Float32Array(5) };
  assertUserError(() => checkParams(expected, emaBad, "x", "pass --width 4"), /ema\.layers\.0\.bias is \[5\].*\n.*pass --width 4$/s);
});
