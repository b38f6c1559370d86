// The likelihood's velocity-and-divergence (jvp) traced into ONNX: onnxruntime gives the engine's
// divergence terms and the same log p.
import { test } from "node:test";
import assert from "node:assert/strict";
import { initEngine } from "../../../src/engine/index.js";
import { Rng } from "../../../src/core/rng.js";
import { initMlp, mlpModel, type MlpConfig } from "../../../src/core/models/mlp.js";
import { initUnet, unetParamShapes, type UnetConfig } from "../../../src/core/models/unet.js";
import { logLikelihoodWith, modelDivergenceField, type DivergenceMode } from "../../../src/core/likelihood.js";
import { unetModel } from "../../../src/core/models/unet.js";
import { exportDivergenceOnnx } from "../../../src/io/onnx.js";
import { createOnnxDivergenceSession } from "../../../src/io/onnxField.js";
import type { HostParams } from "../../../src/core/optim.js";

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const data = (p: HostParams) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.data]));

test("2-D exact divergence on onnxruntime: same v, div and log p as the engine (batch 1 and 6)", async () => {
  await initEngine();
  const cfg: MlpConfig = { dim: 2, hidden: 32, depth: 2, timeEmbDim: 8 };
  const host = initMlp(cfg, new Rng(11));
  const session = await createOnnxDivergenceSession(
    await exportDivergenceOnnx(data(host), { kind: "mlp", config: cfg }, { tangents: 2, exact: true }),
  );
  const onnx = session.field({ sampleShape: [2], divergence: "exact" });
  const engine = modelDivergenceField(mlpModel(cfg), host, { sampleShape: [2], divergence: "exact" });
  try {
    assert.equal(onnx.estimates, 1);
    const rng = new Rng(12);
    for (const n of [1, 6]) {
      const x = rng.normals(2 * n);
      const a = await engine.field(x, 0.4);
      const b = await onnx.field(x, 0.4);
      assert.ok(Math.max(...a.div.map(Math.abs)) > 1e-3, "a non-trivial divergence");
      assert.ok(
        maxDiff(a.v, b.v) < 1e-5 && maxDiff(a.div, b.div) < 1e-4,
        `batch ${n}: v ${maxDiff(a.v, b.v)}, div ${maxDiff(a.div, b.div)}`,
      );
    }
    const x = rng.normals(2 * 5);
    const opts = { sampleShape: [2], solver: "rk4" as const, nfe: 16 };
    const le = await logLikelihoodWith(engine.field, x, opts);
    const lo = await logLikelihoodWith(onnx.field, x, opts);
    assert.ok(maxDiff(le.logp, lo.logp) < 1e-4, `log p differs by ${maxDiff(le.logp, lo.logp)}`);
  } finally {
    engine.dispose();
    await session.release();
  }
});

test("UNet Hutchinson divergence on onnxruntime: the engine's K estimates with the same probes and labels", async () => {
  await initEngine();
  const cfg: UnetConfig = { channels: [4, 8], numClasses: 2, timeEmbDim: 8, groups: 2, inChannels: 1, height: 4, width: 4 };
  const rng = new Rng(13);
  const shapes = unetParamShapes(cfg);
  const host: HostParams = {};
  for (const [k, w] of Object.entries(initUnet(cfg, rng))) host[k] = { shape: shapes[k], data: w.map((v) => v + 0.2 * rng.normal()) };
  const divergence: DivergenceMode = { hutchinson: 3, seed: 5 };
  const labels = Int32Array.of(0, 1, 2);
  const sampleShape = [4, 4, 1];
  const session = await createOnnxDivergenceSession(
    await exportDivergenceOnnx(data(host), { kind: "unet", config: cfg }, { tangents: 3, exact: false }),
  );
  const onnx = session.field({ sampleShape, labels, divergence });
  const engine = modelDivergenceField(unetModel(cfg), host, { sampleShape, labels, divergence });
  try {
    assert.equal(onnx.estimates, 3);
    const x = rng.normals(3 * 16);
    const a = await engine.field(x, 0.7);
    const b = await onnx.field(x, 0.7);
    assert.equal(b.div.length, 9);
    const scale = Math.max(1, ...a.div.map(Math.abs));
    assert.ok(
      maxDiff(a.v, b.v) < 1e-4 && maxDiff(a.div, b.div) < 1e-4 * scale,
      `v ${maxDiff(a.v, b.v)}, div ${maxDiff(a.div, b.div)} (scale ${scale})`,
    );
  } finally {
    engine.dispose();
    await session.release();
  }
});

test("loglik --runtime onnx prints the engine's log-likelihood (2-D, rk4)", async () => {
  const { runCli, tempDir, trainTiny2d } = await import("../../helpers/cli.js");
  const { rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const dir = tempDir();
  try {
    const ckpt = join(dir, "ckpt");
    trainTiny2d(ckpt, 20);
    const line = (runtime: string) => {
      const r = runCli(["loglik", "--ckpt", ckpt, "--n", "64", "--solver", "rk4", "--no-density", "--runtime", runtime]);
      assert.equal(r.code, 0, r.err);
      const m = /: (-?\d+\.\d+) ± (\d+\.\d+) nats \(exact divergence, rk4, (\d+) evaluations/.exec(r.out);
      assert.ok(m, r.out);
      return m.slice(1, 4).map(Number);
    };
    const [engineMean, engineErr, engineNfe] = line("engine");
    const [onnxMean, onnxErr, onnxNfe] = line("onnx");
    assert.ok(
      Math.abs(engineMean - onnxMean) <= 2e-4 && Math.abs(engineErr - onnxErr) <= 2e-4,
      `engine ${engineMean} ± ${engineErr}, onnx ${onnxMean} ± ${onnxErr}`,
    );
    assert.equal(onnxNfe, engineNfe);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
