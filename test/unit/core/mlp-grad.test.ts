// Gradients of the velocity MLP against central finite differences, in float64 on the engine's
// cpu device (its wasm float64 uses float32 transcendental functions, too coarse for this check).
import { test } from "node:test";
import assert from "node:assert/strict";
import { init, defaultDevice, np, valueAndGrad, tree, type Array } from "../../../src/engine/index.js";
import { initMlp, mlpModel, type MlpConfig } from "../../../src/core/models/mlp.js";
import { Rng } from "../../../src/core/rng.js";
import type { Params } from "../../../src/core/optim.js";

test("MLP parameter and input gradients match finite differences (cpu, float64)", async () => {
  await init("cpu");
  const previous = defaultDevice();
  defaultDevice("cpu");
  try {
    const cfg: MlpConfig = { dim: 2, hidden: 8, depth: 2, timeEmbDim: 6 };
    const rng = new Rng(3);
    const host = initMlp(cfg, rng);
    const f64 = (d: Float32Array | Float64Array, shape: number[]) => np.array(Float64Array.from(d)).reshape(shape);
    const n = 5;
    const xData = Float64Array.from(rng.normals(2 * n));
    const tData = Float64Array.from(rng.uniforms(n));
    const rData = Float64Array.from(rng.normals(2 * n));
    const model = mlpModel(cfg);
    // A scalar functional of the network output: sum(v(x, t) * r).
    const objective = (p: Params, x: Array) => np.sum(model.apply(p, x, f64(tData, [n]), null).mul(f64(rData, [n, 2])));
    const makeParams = (override?: { name: string; index: number; delta: number }): Params => {
      const out: Params = {};
      for (const [name, { shape, data }] of Object.entries(host)) {
        const d = Float64Array.from(data);
        if (override && override.name === name) d[override.index] += override.delta;
        out[name] = f64(d, shape);
      }
      return out;
    };
    const value = (p: Params, x: Array) => objective(p, x).dataSync()[0];
    const [, grads] = valueAndGrad(objective, { argnums: [0, 1] })(makeParams(), f64(xData, [n, 2])) as unknown as [Array, [Params, Array]];
    const [gp, gx] = grads;
    const h = 1e-6;
    let checked = 0;
    for (const [name, g] of Object.entries(gp)) {
      const gHost = g.ref.dataSync();
      for (const index of [0, Math.floor(gHost.length / 2), gHost.length - 1]) {
        const plus = value(makeParams({ name, index, delta: h }), f64(xData, [n, 2]));
        const minus = value(makeParams({ name, index, delta: -h }), f64(xData, [n, 2]));
        const fd = (plus - minus) / (2 * h);
        assert.ok(
          Math.abs(fd - gHost[index]) < 1e-6 * Math.max(1, Math.abs(fd)),
          `${name}[${index}]: autodiff ${gHost[index]} vs fd ${fd}`,
        );
        checked++;
      }
    }
    const gxHost = gx.dataSync();
    for (let index = 0; index < xData.length; index++) {
      const xp = Float64Array.from(xData);
      const xm = Float64Array.from(xData);
      xp[index] += h;
      xm[index] -= h;
      const fd = (value(makeParams(), f64(xp, [n, 2])) - value(makeParams(), f64(xm, [n, 2]))) / (2 * h);
      assert.ok(Math.abs(fd - gxHost[index]) < 1e-6 * Math.max(1, Math.abs(fd)), `x[${index}]: autodiff ${gxHost[index]} vs fd ${fd}`);
      checked++;
    }
    tree.dispose(gp);
    assert.ok(checked >= 20);
  } finally {
    defaultDevice(previous);
  }
});
