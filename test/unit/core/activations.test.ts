// SiLU and sigmoid must be finite in value and gradient for every finite input. jax-js's nn.silu
// computes 1 / (1 + e^-x): below x = -88.7 e^-x overflows float32 and the gradient is 0 * inf = NaN,
// which turned the default checkerboard run into NaN at step 26,264. Closed forms here are in float64
// on the host: sigma(x) = 1 / (1 + e^-x), silu = x sigma, silu' = sigma (1 + x (1 - sigma)), sigma' = sigma (1 - sigma).
import { test } from "node:test";
import assert from "node:assert/strict";
import { init, initEngine, defaultDevice, np, grad, fromHost, toHost, type Array, type DType } from "../../../src/engine/index.js";
import { sigmoid, silu } from "../../../src/core/models/layers.js";
import { initMlp, mlpModel, type MlpConfig } from "../../../src/core/models/mlp.js";
import { Rng } from "../../../src/core/rng.js";
import { exportMlpOnnx } from "../../../src/io/onnx.js";
import { createOnnxField } from "../../../src/io/onnxField.js";

const POINTS = [0, 10, -10, 88.7, -88.7, 89, -89, 100, -100, 1e4, -1e4];

const sig = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
const closed = {
  // 1 - sigma(x) written as sigma(-x): exact where 1 - sigma rounds to 0.
  sigmoid: { value: sig, grad: (x: number) => sig(x) * sig(-x) },
  silu: { value: (x: number) => x * sig(x), grad: (x: number) => sig(x) * (1 + x * sig(-x)) },
};

// Below x = -88 the sigmoid is capped at 1 / (1 + e^88) = 6.1e-39, so results there may differ from the
// closed form by 6.1e-39 (sigmoid, gradients) or 6.1e-39 |x| (silu): the absolute tail of the tolerance.
const tail = (x: number) => 1e-38 * Math.max(1, Math.abs(x));

async function check(dtype: DType, rel: number, label: string): Promise<void> {
  for (const [name, f] of [
    ["sigmoid", sigmoid],
    ["silu", silu],
  ] as const) {
    const x = np.array(POINTS, { dtype });
    const value = await f(x.ref).data();
    const g = await grad((x: Array) => np.sum(f(x)))(x).data();
    POINTS.forEach((p, i) => {
      for (const [what, got, want] of [
        ["value", value[i], closed[name].value(p)],
        ["gradient", g[i], closed[name].grad(p)],
      ] as const) {
        assert.ok(Number.isFinite(got), `${label} ${name} ${what} at ${p} is ${got}`);
        assert.ok(Math.abs(got - want) <= rel * Math.abs(want) + tail(p), `${label} ${name} ${what} at ${p}: ${got} vs ${want}`);
      }
    });
  }
}

test("sigmoid and SiLU: value and gradient match closed forms at 0, ±10, ±88.7, ±89, ±100, ±1e4 (float32, wasm)", async () => {
  await initEngine();
  await check(np.float32, 1e-6, "wasm float32");
});

test("sigmoid and SiLU: value and gradient match closed forms in float64 (cpu device)", async () => {
  await init("cpu");
  const previous = defaultDevice();
  defaultDevice("cpu");
  try {
    await check(np.float64, 1e-12, "cpu float64");
    await check(np.float32, 1e-6, "cpu float32");
  } finally {
    defaultDevice(previous);
  }
});

/** An MLP whose second layer has units with pre-activations far below -88.7 for every input. */
function mlpWithDeadUnits(cfg: MlpConfig, bias: number) {
  const host = initMlp(cfg, new Rng(5));
  const b = host["layers.1.bias"].data;
  for (let i = 0; i < b.length; i += 2) b[i] = bias;
  return host;
}

test("an MLP with pre-activations of -1e4 has finite outputs and gradients, and its ONNX export agrees", async () => {
  await initEngine();
  const cfg: MlpConfig = { dim: 2, hidden: 16, depth: 3, timeEmbDim: 8 };
  const host = mlpWithDeadUnits(cfg, -1e4);
  // A few units pushed far positive as well, so both tails run through the exported Sigmoid.
  host["layers.1.bias"].data[1] = 1e4;
  const rng = new Rng(6);
  const n = 7;
  const x = rng.normals(2 * n);
  const t = rng.uniforms(n);
  const params = (): Record<string, Array> => Object.fromEntries(Object.entries(host).map(([k, v]) => [k, fromHost(v.data, v.shape)]));
  const model = mlpModel(cfg);
  const engine = await toHost(model.apply(params(), fromHost(x, [n, 2]), fromHost(t, [n]), null));
  const grads = grad((p: Record<string, Array>) => np.sum(np.square(model.apply(p, fromHost(x, [n, 2]), fromHost(t, [n]), null))))(
    params(),
  );
  for (const [name, g] of Object.entries(grads)) {
    const d = await toHost(g);
    assert.ok(d.every(Number.isFinite), `gradient of ${name} is not finite`);
  }
  assert.ok(engine.every(Number.isFinite));
  const weights = Object.fromEntries(Object.entries(host).map(([k, v]) => [k, v.data]));
  const field = await createOnnxField(await exportMlpOnnx(weights, cfg));
  try {
    const onnx = await field.run(x, t, undefined, [n, 2]);
    const scale = Math.max(...engine.map(Math.abs));
    for (let i = 0; i < engine.length; i++)
      assert.ok(Math.abs(engine[i] - onnx[i]) <= 1e-5 * scale, `output ${i}: engine ${engine[i]} vs onnx ${onnx[i]}`);
  } finally {
    await field.release();
  }
});
