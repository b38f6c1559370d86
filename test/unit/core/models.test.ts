// Model families (core/models): one home per network, found by checkpoint kind; and the one
// guided field every runtime shares.
import { test } from "node:test";
import assert from "node:assert/strict";
import { UserError } from "../../../src/core/errors.js";
import { Rng } from "../../../src/core/rng.js";
import { modelFamily, modelKinds } from "../../../src/core/models/registry.js";
import { initMlp, mlpFamily, mlpModel, mlpParamCount, type MlpConfig } from "../../../src/core/models/mlp.js";
import { initUnetParams, unetFamily, unetParamCount, type UnetConfig } from "../../../src/core/models/unet.js";
import { modelField } from "../../../src/core/field.js";
import type { VelocityModel } from "../../../src/core/models/family.js";
import { initEngine, np, type Array } from "../../../src/engine/index.js";

const FIXTURES = `${import.meta.dirname}/../../fixtures`;

const mlp: MlpConfig = { dim: 2, hidden: 8, depth: 2, timeEmbDim: 4 };
const unet: UnetConfig = { channels: [4, 8], numClasses: 3, timeEmbDim: 4, groups: 4, inChannels: 1, height: 8, width: 8 };

test("the registry finds each family by its checkpoint kind and names the known kinds for an unknown one", () => {
  assert.equal(modelFamily("2d"), mlpFamily);
  assert.equal(modelFamily("image"), unetFamily);
  assert.deepEqual(modelKinds().slice(0, 2), ["2d", "image"]);
  assert.throws(
    () => modelFamily("gan"),
    (e: unknown) => e instanceof UserError && /kind 'gan'.*'2d', 'image'/.test(e.message),
  );
});

test("a family's shapes, count, init and sample shape agree with each other", () => {
  const m = mlpFamily.init(mlp, new Rng(1));
  assert.deepEqual(m, initMlp(mlp, new Rng(1)));
  // 2 + 4 inputs -> 8 -> 8 -> 2
  assert.equal(mlpFamily.paramCount(mlp), 6 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2);
  assert.equal(mlpParamCount(mlp), mlpFamily.paramCount(mlp));
  assert.deepEqual(mlpFamily.sampleShape(mlp), [2]);
  assert.equal(mlpFamily.nullLabel(mlp), null);
  const u = unetFamily.init(unet, new Rng(2));
  assert.deepEqual(u, initUnetParams(unet, new Rng(2)));
  const shapes = unetFamily.paramShapes(unet);
  assert.deepEqual(Object.keys(u), Object.keys(shapes));
  for (const [k, s] of Object.entries(shapes)) assert.deepEqual(u[k].shape, s, k);
  assert.equal(unetFamily.paramCount(unet), unetParamCount(unet));
  assert.deepEqual(unetFamily.sampleShape(unet), [8, 8, 1]);
  assert.equal(unetFamily.nullLabel(unet), 3);
  assert.match(unetFamily.describe(unet), /UNet \[4, 8\] · 3 classes · 8×8/);
});

test("parseConfig accepts a stored config and refuses a broken one naming the field", () => {
  assert.deepEqual(mlpFamily.parseConfig({ ...mlp, extra: 1 }, "ckpt.json"), mlp);
  assert.throws(
    () => mlpFamily.parseConfig({ dim: 2, hidden: "8", depth: 2, timeEmbDim: 4 }, "a/ckpt.json"),
    (e: unknown) => e instanceof UserError && /a\/ckpt\.json.*"model" section \(hidden/.test(e.message),
  );
  assert.throws(() => mlpFamily.parseConfig(undefined, "x"), UserError);
  assert.deepEqual(unetFamily.parseConfig(unet, "ckpt.json"), unet);
  assert.throws(
    () => unetFamily.parseConfig({ ...unet, channels: "4,8" }, "u.json"),
    (e: unknown) => e instanceof UserError && /u\.json.*\(channels/.test(e.message),
  );
  // Buildable fields, but 6 is not a multiple of 4 groups.
  assert.throws(
    () => unetFamily.parseConfig({ ...unet, channels: [4, 6] }, "u.json"),
    (e: unknown) => e instanceof UserError && /u\.json has an invalid UNet config: .*6/.test(e.message),
  );
});

test("modelField: guidance is v_u + w (v_c - v_u) from one network evaluation on both halves (guidedVelocity)", async () => {
  await initEngine();
  // A fake network whose velocity is x * (label + 1) + t: conditional and unconditional differ.
  const model: VelocityModel = {
    apply: (_p, x, t, y) => {
      const n = x.shape[0];
      const scale = (y as Array).astype(np.float32).add(1).reshape([n, 1]);
      return x.mul(scale).add(t.reshape([n, 1]));
    },
  };
  const labels = Int32Array.of(0, 2);
  const x = Float32Array.of(1, 2, 3, 4);
  const w = 3;
  const guided = modelField(model, {}, { sampleShape: [2], labels, guidance: w, nullLabel: 5 });
  const v = await guided.field(x, 0.5);
  assert.equal(guided.evaluations(), 1, "a guided evaluation counts once");
  const expect = Array.from(x, (xi, i) => {
    const c = xi * (labels[Math.floor(i / 2)] + 1) + 0.5;
    const u = xi * 6 + 0.5;
    return u + w * (c - u);
  });
  assert.deepEqual(Array.from(v), expect);
  guided.dispose();
  // w = 1: plain conditional; no labels: label 0 for every sample.
  const plain = modelField(model, {}, { sampleShape: [2], labels, guidance: 1, nullLabel: 5 });
  assert.deepEqual(Array.from(await plain.field(x, 0)), [1, 2, 9, 12]);
  plain.dispose();
  const unlabelled = modelField(model, {}, { sampleShape: [2] });
  assert.deepEqual(Array.from(await unlabelled.field(x, 0)), [1, 2, 3, 4]);
  unlabelled.dispose();
  assert.throws(() => modelField(model, {}, { sampleShape: [2], labels, guidance: 2 }), /null label/);
});

// Checkpoints written by the code before issue 12 (test/fixtures/README.md) still load, and their
// networks compute the velocities that code computed.
test("loadModel reads checkpoints written before the layout change, with the same velocities", async () => {
  const { initEngine } = await import("../../../src/engine/index.js");
  const { loadModel } = await import("../../../src/pipelines/model.js");
  const { modelField } = await import("../../../src/core/field.js");
  const { readFileSync } = await import("node:fs");
  await initEngine();
  const expected = JSON.parse(readFileSync(FIXTURES + "/velocities-v1.json", "utf8"));
  const a = await loadModel(FIXTURES + "/ckpt-2d-v1");
  assert.equal(a.kind, "2d");
  assert.equal(a.family, mlpFamily);
  assert.deepEqual(a.model, { dim: 2, hidden: 8, depth: 1, timeEmbDim: 4 });
  assert.equal(a.config.step, 3);
  assert.equal(a.losses.length, 3);
  const fa = modelField(a.family.model(a.model), a.ema, { sampleShape: [2] });
  const va = await fa.field(new Rng(expected.mlp.seed).normals(6), expected.mlp.t);
  fa.dispose();
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(va[i] - expected.mlp.v[i]) < 1e-6, `mlp v[${i}] ${va[i]} vs ${expected.mlp.v[i]}`);

  const b = await loadModel(FIXTURES + "/ckpt-image-v1", { kind: "image", command: "test" });
  assert.equal(b.family, unetFamily);
  assert.deepEqual(b.model.channels, [4, 8]);
  const fb = modelField(b.family.model(b.model), b.ema, {
    sampleShape: b.family.sampleShape(b.model),
    labels: Int32Array.of(0, 1),
    guidance: 2,
    nullLabel: b.family.nullLabel(b.model) ?? undefined,
  });
  const vb = await fb.field(new Rng(expected.unet.seed).normals(2 * 64), expected.unet.t);
  fb.dispose();
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(vb[i] - expected.unet.first8[i]) < 1e-6, `unet v[${i}]`);
  assert.ok(Math.abs(vb.reduce((s, v) => s + v, 0) - expected.unet.sum) < 1e-4);
  // A command that takes one kind refuses the other, naming both.
  await assert.rejects(
    loadModel(FIXTURES + "/ckpt-image-v1", { kind: "2d", command: "sample2d" }),
    (e: unknown) => e instanceof UserError && /'image' model; sample2d needs a '2d' model/.test(e.message),
  );
});

test("a trainer returns the model it saved: the same config, weights and log loadModel reads back", async () => {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { trainToy2d } = await import("../../../src/pipelines/toy2d.js");
  const { loadModel } = await import("../../../src/pipelines/model.js");
  const dir = mkdtempSync(join(tmpdir(), "fm-models-"));
  try {
    const base = {
      dataset: "moons" as const,
      batchSize: 16,
      lr: 1e-3,
      seed: 4,
      path: "straight" as const,
      timeSampler: "uniform" as const,
      emaDecay: 0.9,
      coupling: "independent" as const,
      model: { dim: 2, hidden: 8, depth: 1, timeEmbDim: 4 },
      out: dir,
      checkpointEvery: 2,
      backend: "jax" as const,
    };
    await trainToy2d({ ...base, steps: 3, resume: false });
    const r = await trainToy2d({ ...base, steps: 5, resume: true });
    assert.equal(r.startStep, 3);
    assert.equal(r.step, 5);
    const disk = await loadModel(dir, { kind: "2d" });
    const { weightsSha256, ...stored } = disk.config;
    assert.equal(typeof weightsSha256, "string");
    assert.deepEqual(r.model.config, stored);
    // Two segments with the same settings are one record of steps 0-5.
    assert.deepEqual(
      (r.model.config.segments as { from: number; to: number }[]).map((s) => [s.from, s.to]),
      [[0, 5]],
    );
    assert.deepEqual(r.model.params, disk.params);
    assert.deepEqual(r.model.ema, disk.ema);
    assert.deepEqual(r.model.losses, disk.losses);
    assert.equal(r.model.losses.length, 5);
    // Nothing left to train: the returned model is the checkpoint's, and nothing is written.
    const again = await trainToy2d({ ...base, steps: 5, resume: true });
    assert.equal(again.step, 5);
    assert.deepEqual(again.model.ema, disk.ema);
    assert.deepEqual(again.model.config, stored);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("MLP Fourier features: [x, sin(x B), cos(x B), embed(t)] feed the first layer; configs without them load as before", async () => {
  await initEngine();
  const cfg: MlpConfig = { dim: 2, hidden: 3, depth: 1, timeEmbDim: 0, fourierFeatures: 2, fourierScale: 0.5 };
  const host = initMlp(cfg, new Rng(5));
  // 2 + 2*2 + 1 inputs -> 3 -> 2, plus B [2, 2]
  assert.deepEqual(host["fourier.weight"].shape, [2, 2]);
  assert.deepEqual(host["layers.0.weight"].shape, [7, 3]);
  assert.equal(mlpParamCount(cfg), 4 + 7 * 3 + 3 + 3 * 2 + 2);
  // B starts as N(0, (2 pi scale)^2): its 4 entries are the Rng's normals times pi.
  const z = new Rng(5).normals(4);
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(host["fourier.weight"].data[i] - z[i] * Math.PI) < 1e-5);
  const x = Float32Array.of(0.3, -1.2, 2.0, 0.5);
  const t = Float32Array.of(0.25, 0.8);
  const run = async (model: VelocityModel) => {
    const params: Record<string, Array> = {};
    for (const [k, v] of Object.entries(host)) params[k] = np.array(v.data).reshape(v.shape);
    return (await model.apply(params, np.array(x).reshape([2, 2]), np.array(t), null).data()) as Float32Array;
  };
  // Both layouts: batch-first (the default: jax-js, exports) and features-first (traced for onnxruntime).
  for (const got of [await run(mlpModel(cfg)), await run(mlpFamily.model(cfg, { runtime: "onnxruntime" }))]) {
    // The same network written out by hand in float64.
    const w = (name: string, i: number, j: number) => host[name].data[i * host[name].shape[1] + j];
    for (let b = 0; b < 2; b++) {
      const x0 = x[2 * b];
      const x1 = x[2 * b + 1];
      const proj = [0, 1].map((k) => x0 * w("fourier.weight", 0, k) + x1 * w("fourier.weight", 1, k));
      const input = [x0, x1, Math.sin(proj[0]), Math.sin(proj[1]), Math.cos(proj[0]), Math.cos(proj[1]), t[b]];
      const h = [0, 1, 2].map((j) => {
        const a = input.reduce((s, v, i) => s + v * w("layers.0.weight", i, j), host["layers.0.bias"].data[j]);
        return a / (1 + Math.exp(-a));
      });
      for (let o = 0; o < 2; o++) {
        const v = h.reduce((s, hj, j) => s + hj * w("layers.1.weight", j, o), host["layers.1.bias"].data[o]);
        assert.ok(Math.abs(got[2 * b + o] - v) < 1e-5, `sample ${b}, output ${o}: ${got[2 * b + o]} vs ${v}`);
      }
    }
  }
  // Stored configs: the option round-trips, an old one has no B, a bad scale is named.
  assert.deepEqual(mlpFamily.parseConfig(cfg, "ckpt.json"), cfg);
  assert.ok(!("fourier.weight" in mlpFamily.paramShapes(mlpFamily.parseConfig(mlp, "ckpt.json"))));
  assert.match(mlpFamily.describe(cfg), /2 Fourier features \(scale 0.5\)/);
  assert.throws(
    () => mlpFamily.parseConfig({ ...cfg, fourierScale: -1 }, "a/ckpt.json"),
    (e: unknown) => e instanceof UserError && /a\/ckpt\.json.*\(fourierScale/.test(e.message),
  );
});
