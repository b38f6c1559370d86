// ONNX export must reproduce the engine's networks: same random weights and inputs, onnxruntime
// output equal to the jax-js forward pass to float32 rounding.
import { test } from "node:test";
import assert from "node:assert/strict";
import { initEngine, np, fromHost, toHost, type Array } from "../src/engine/index.js";
import { Rng } from "../src/core/rng.js";
import { initUnet, unetApply, unetParamShapes, type UnetConfig } from "../src/core/models/unet.js";
import { initMlp, mlpModel, type MlpConfig } from "../src/core/models/mlp.js";
import { createOnnxField, exportMlpOnnx, exportUnetOnnx } from "../src/io/onnx.js";

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Random (not zero) weights everywhere so every path through the graph is exercised. */
function randomUnetWeights(cfg: UnetConfig, rng: Rng): Record<string, Float32Array> {
  const init = initUnet(cfg, rng);
  for (const w of Object.values(init)) for (let i = 0; i < w.length; i++) w[i] += 0.2 * rng.normal();
  return init;
}

test("UNet ONNX export matches the engine (incl. null class, stride-2 path, batch 3)", async () => {
  await initEngine();
  const cfg: UnetConfig = { channels: [8, 16, 16], numClasses: 3, timeEmbDim: 8, groups: 4, inChannels: 2, height: 8, width: 12 };
  const rng = new Rng(7);
  const weights = randomUnetWeights(cfg, rng);
  const shapes = unetParamShapes(cfg);
  const B = 3;
  const x = rng.normals(B * cfg.height * cfg.width * cfg.inChannels);
  const t = Float32Array.of(0.1, 0.5, 0.97);
  const labels = Int32Array.of(0, 2, cfg.numClasses);
  const params: Record<string, Array> = {};
  for (const [k, s] of Object.entries(shapes)) params[k] = fromHost(weights[k], s);
  const engine = await toHost(unetApply(params, fromHost(x, [B, cfg.height, cfg.width, cfg.inChannels]), fromHost(t, [B]), np.array(labels, { dtype: np.int32 }), cfg));

  const field = await createOnnxField(exportUnetOnnx(weights, cfg));
  try {
    const onnx = await field.run(x, t, BigInt64Array.from(labels, (l) => BigInt(l)), [B, cfg.height, cfg.width, cfg.inChannels]);
    const scale = Math.max(...engine.map(Math.abs));
    assert.ok(scale > 0.1, "outputs should not be trivially zero");
    assert.ok(maxAbsDiff(engine, onnx) < 1e-4 * Math.max(1, scale), `max diff ${maxAbsDiff(engine, onnx)} (scale ${scale})`);
    // The label matters, and the null class gives a different field than a real class.
    const yAlt = BigInt64Array.of(1n, 1n, 1n);
    const alt = await field.run(x, t, yAlt, [B, cfg.height, cfg.width, cfg.inChannels]);
    assert.ok(maxAbsDiff(onnx, alt) > 1e-3);
    await assert.rejects(field.run(x, t, undefined, [B, cfg.height, cfg.width, cfg.inChannels]), /int64 labels/);
  } finally {
    await field.release();
  }
});

test("MLP ONNX export matches the engine (sinusoidal and raw time input)", async () => {
  await initEngine();
  for (const timeEmbDim of [16, 0]) {
    const cfg: MlpConfig = { dim: 2, hidden: 32, depth: 3, timeEmbDim };
    const host = initMlp(cfg, new Rng(3));
    const rng = new Rng(4);
    const B = 5;
    const x = rng.normals(B * 2);
    const t = rng.uniforms(B);
    const params: Record<string, Array> = {};
    const weights: Record<string, Float32Array> = {};
    for (const [k, v] of Object.entries(host)) {
      params[k] = fromHost(v.data, v.shape);
      weights[k] = v.data;
    }
    const engine = await toHost(mlpModel(cfg).apply(params, fromHost(x, [B, 2]), fromHost(t, [B]), null));
    const field = await createOnnxField(exportMlpOnnx(weights, cfg));
    try {
      const onnx = await field.run(x, t, undefined, [B, 2]);
      assert.ok(maxAbsDiff(engine, onnx) < 1e-5, `timeEmbDim ${timeEmbDim}: max diff ${maxAbsDiff(engine, onnx)}`);
    } finally {
      await field.release();
    }
  }
});

test("export rejects weights that do not match the config", () => {
  const cfg: UnetConfig = { channels: [8, 16], numClasses: 2, timeEmbDim: 8, groups: 4, inChannels: 1, height: 4, width: 4 };
  const weights = initUnet(cfg, new Rng(1));
  delete weights["stem.weight"];
  assert.throws(() => exportUnetOnnx(weights, cfg), /stem\.weight/);
});
