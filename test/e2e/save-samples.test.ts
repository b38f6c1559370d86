// --save-samples on sample2d and sample-image: .npy files read back per numpy's format spec
// (magic, version 1.0, u16 header length, dict, 64-byte alignment) and safetensors, with labels.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runCli, snapshotTree, assertTreeKept, tempDir } from "../helpers/cli.js";
import { encodeNpy } from "../../src/io/samplesFile.js";
import { decodeSafetensors } from "../../src/io/safetensors.js";

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
function temp(): string {
  const d = tempDir("fm-save-");
  roots.push(d);
  return d;
}

/** A .npy reader written from the spec (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html). */
function readNpy(buf: Uint8Array): { descr: string; fortran: boolean; shape: number[]; data: Float32Array | Int32Array } {
  assert.deepEqual([...buf.subarray(0, 6)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59], "magic \\x93NUMPY");
  assert.deepEqual([buf[6], buf[7]], [1, 0], "version 1.0");
  const headerLen = buf[8] | (buf[9] << 8);
  assert.equal((10 + headerLen) % 64, 0, "data starts on a multiple of 64 bytes");
  const header = String.fromCharCode(...buf.subarray(10, 10 + headerLen));
  assert.ok(header.endsWith("\n"), "header ends in a newline");
  const m = /^\{'descr': '([<>|]\w+)', 'fortran_order': (True|False), 'shape': \(([\d, ]*)\), \} *\n$/.exec(header);
  assert.ok(m, `header is a dict literal: ${JSON.stringify(header)}`);
  const shape = m[3]
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  const body = buf.slice(10 + headerLen);
  const data =
    m[1] === "<f4"
      ? new Float32Array(body.buffer, body.byteOffset, body.byteLength / 4)
      : new Int32Array(body.buffer, body.byteOffset, body.byteLength / 4);
  assert.equal(
    data.length,
    shape.reduce((a, b) => a * b, 1),
    "data length matches the shape",
  );
  return { descr: m[1], fortran: m[2] === "True", shape, data };
}

test("encodeNpy: header per the spec (1-D shapes with a trailing comma), data round-trips, float32 and int32", () => {
  const f = readNpy(encodeNpy(Float32Array.from([1.5, -2, 3, 4, 5, 6]), [2, 3]));
  assert.deepEqual([f.descr, f.fortran, f.shape, [...f.data]], ["<f4", false, [2, 3], [1.5, -2, 3, 4, 5, 6]]);
  const i = encodeNpy(Int32Array.from([7, -1, 2]), [3]);
  assert.match(String.fromCharCode(...i.subarray(10, 80)), /'shape': \(3,\)/);
  assert.deepEqual([...readNpy(i).data], [7, -1, 2]);
  assert.throws(() => encodeNpy(new Float32Array(5), [2, 3]), /shape \[2,3\] holds 6 values, got 5/);
});

test("sample2d --save-samples writes the samples as .npy and .safetensors (the same numbers)", () => {
  const root = temp();
  cpSync(join(import.meta.dirname, "..", "fixtures", "ckpt-2d-v1"), join(root, "ckpt"), { recursive: true });
  const args = [
    "sample2d",
    "--ckpt",
    join(root, "ckpt"),
    "--n",
    "10",
    "--solver",
    "euler",
    "--nfe",
    "2",
    "--frames",
    "2",
    "--out",
    join(root, "out"),
  ];
  const a = runCli([...args, "--save-samples", join(root, "s.npy")]);
  assert.equal(a.code, 0, a.err);
  assert.match(a.out, /wrote .*s\.npy/);
  const npy = readNpy(readFileSync(join(root, "s.npy")));
  assert.deepEqual(npy.shape, [10, 2]);
  assert.ok(!existsSync(join(root, "s.labels.npy")), "no labels for an unconditional model");
  const b = runCli([...args, "--save-samples", join(root, "s.safetensors")]);
  assert.equal(b.code, 0, b.err);
  const st = decodeSafetensors(readFileSync(join(root, "s.safetensors")));
  assert.deepEqual(st.tensors.samples.shape, [10, 2]);
  assert.deepEqual([...st.tensors.samples.data], [...npy.data]);
  assert.equal(st.metadata?.nfe, "2");
});

test("sample-image --save-samples: samples [n, H, W, C] and labels in .npy (+ .labels.npy) and .safetensors", () => {
  const root = temp();
  cpSync(join(import.meta.dirname, "..", "fixtures", "ckpt-image-v1"), join(root, "ckpt"), { recursive: true });
  const args = [
    "sample-image",
    "--ckpt",
    join(root, "ckpt"),
    "--per-class",
    "2",
    "--solver",
    "euler",
    "--nfe",
    "2",
    "--frames",
    "2",
    "--runtime",
    "engine",
    "--out",
    join(root, "out"),
  ];
  const a = runCli([...args, "--save-samples", join(root, "x.npy")]);
  assert.equal(a.code, 0, a.err);
  const x = readNpy(readFileSync(join(root, "x.npy")));
  assert.deepEqual([x.descr, x.shape], ["<f4", [4, 8, 8, 1]]);
  const y = readNpy(readFileSync(join(root, "x.labels.npy")));
  assert.deepEqual([y.descr, y.shape, [...y.data]], ["<i4", [4], [0, 0, 1, 1]]);
  const b = runCli([...args, "--save-samples", join(root, "x.safetensors")]);
  assert.equal(b.code, 0, b.err);
  const st = decodeSafetensors(readFileSync(join(root, "x.safetensors")));
  assert.deepEqual([...st.tensors.labels.data], [0, 0, 1, 1]);
  assert.deepEqual([...st.tensors.samples.data], [...x.data]);
  assert.equal(st.metadata?.guidance, "2");
});

test("--save-samples with another extension, or naming a folder, exits 2 before sampling; nothing changes", () => {
  const root = temp();
  cpSync(join(import.meta.dirname, "..", "fixtures", "ckpt-2d-v1"), join(root, "ckpt"), { recursive: true });
  const before = snapshotTree(root);
  const r = runCli(["sample2d", "--ckpt", join(root, "ckpt"), "--save-samples", join(root, "s.csv")]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /must end in \.safetensors or \.npy/);
  const d = runCli(["sample2d", "--ckpt", join(root, "ckpt"), "--save-samples", join(root, "ckpt")]);
  assert.equal(d.code, 2, d.err);
  assertTreeKept(before, root);
});
