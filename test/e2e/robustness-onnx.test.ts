// `flowmatch export` as a user meets it: a 2-D export runs at any batch size, --guided on a model
// without labels is refused (exit 1, the reason, nothing written), and a guided image export has
// the guidance input w.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runCli, tempDir, snapshotTree, assertTreeKept, trainTiny2d } from "../helpers/cli.js";
import { levelFolder } from "../helpers/colour.js";
import { createOnnxField } from "../../src/io/onnxField.js";

test("export: a 2-D model runs at batch 1 and 7; --guided on it is refused and writes nothing", async () => {
  const dir = tempDir();
  try {
    const ckpt = join(dir, "run");
    trainTiny2d(ckpt, 3);
    const before = snapshotTree(dir);
    const out = join(dir, "model.onnx");
    const refused = runCli(["export", "--ckpt", ckpt, "--onnx", out, "--guided"]);
    assert.equal(refused.code, 1, refused.out + refused.err);
    assert.match(refused.err, /--guided needs a class-conditional image model.*drop --guided/);
    assert.ok(!existsSync(out));
    assertTreeKept(before, dir);

    const r = runCli(["export", "--ckpt", ckpt, "--onnx", out]);
    assert.equal(r.code, 0, r.err);
    const field = await createOnnxField(readFileSync(out));
    try {
      assert.ok(!field.conditional && !field.guided);
      for (const B of [1, 7]) {
        const v = await field.run(new Float32Array(2 * B).fill(0.5), new Float32Array(B).fill(0.3), undefined, [B, 2]);
        assert.equal(v.length, 2 * B);
        assert.ok(v.every(Number.isFinite));
        // Every row got the same input, so every row has the same velocity.
        for (let i = 2; i < v.length; i++) assert.equal(v[i], v[i % 2]);
      }
    } finally {
      await field.release();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("export --guided: an image model's graph takes the guidance weight w", async () => {
  const dir = tempDir();
  try {
    const ds = levelFolder(join(dir, "data"), [0, 200]);
    const ckpt = join(dir, "run");
    const trained = runCli([
      "train-image",
      "--dataset",
      `folder:${ds}`,
      "--out",
      ckpt,
      "--steps",
      "2",
      "--batch-size",
      "4",
      "--channels",
      "4,4",
      "--time-emb-dim",
      "4",
      "--groups",
      "2",
      "--per-class",
      "1",
      "--nfe",
      "1",
      "--solver",
      "euler",
    ]);
    assert.equal(trained.code, 0, trained.err);
    const out = join(dir, "guided.onnx");
    const r = runCli(["export", "--ckpt", ckpt, "--onnx", out, "--guided"]);
    assert.equal(r.code, 0, r.err);
    const field = await createOnnxField(readFileSync(out));
    try {
      assert.ok(field.conditional && field.guided);
      const x = Float32Array.from({ length: 2 * 16 }, (_, i) => Math.sin(i));
      const t = Float32Array.of(0.2, 0.7);
      const y = BigInt64Array.of(0n, 1n);
      // Linear in w: v(w = 2) - v(w = 1) = v(w = 1) - v(w = 0).
      const [v0, v1, v2] = await Promise.all([0, 1, 2].map((w) => field.run(x, t, y, [2, 4, 4, 1], w)));
      for (let i = 0; i < x.length; i++) assert.ok(Math.abs(v2[i] - 2 * v1[i] + v0[i]) < 1e-4, `entry ${i}`);
    } finally {
      await field.release();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
