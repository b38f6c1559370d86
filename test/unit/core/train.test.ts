// Training against analytic answers: for a Gaussian source and a Gaussian target the straight
// path's marginal velocity, its samples and even the minimum of the CFM loss are known in closed form.
import { test } from "node:test";
import assert from "node:assert/strict";
import { initEngine } from "../../../src/engine/index.js";
import { Rng } from "../../../src/core/rng.js";
import { FlowTrainer } from "../../../src/core/train.js";
import { DEFAULT_ADAM } from "../../../src/core/optim.js";
import { initMlp, mlpModel, type MlpConfig } from "../../../src/core/models/mlp.js";
import { getScheduler, pathCoefficients, samplePath } from "../../../src/core/paths.js";
import { getTimeSampler } from "../../../src/core/timeSamplers.js";
import { modelField } from "../../../src/core/field.js";
import { odeint } from "../../../src/core/solvers.js";

const MU = [2, -1];
const STD = [0.5, 1.5];

function gaussianTarget(n: number, rng: Rng): Float32Array {
  const x = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < 2; j++) x[2 * i + j] = MU[j] + STD[j] * rng.normal();
  return x;
}

/**
 * Minimum CFM loss on the straight path per dimension: E_t[Var(u | x_t)] with u = x1 - x0,
 * x_t = t x1 + (1 - t) x0, so Var(u | x_t) = (s^2 + 1) - (t s^2 - (1 - t))^2 / (t^2 s^2 + (1 - t)^2).
 */
function analyticMinimumLoss(): number {
  let total = 0;
  const steps = 20000;
  for (const s of STD) {
    for (let k = 0; k < steps; k++) {
      const t = (k + 0.5) / steps;
      const cov = t * s * s - (1 - t);
      total += (s * s + 1 - (cov * cov) / (t * t * s * s + (1 - t) ** 2)) / steps;
    }
  }
  return total / 2; // the loss averages over the two dimensions
}

test("a small MLP trained on a Gaussian target reaches the analytic minimum loss and samples the target", async () => {
  await initEngine();
  const cfg: MlpConfig = { dim: 2, hidden: 64, depth: 2, timeEmbDim: 16 };
  const model = mlpModel(cfg);
  const rng = new Rng(11);
  const trainer = new FlowTrainer({
    model,
    params: initMlp(cfg, rng),
    sampleShape: [2],
    adam: { ...DEFAULT_ADAM, lr: 2e-3 },
    emaDecay: 0.99,
  });
  const scheduler = getScheduler("straight");
  const times = getTimeSampler("uniform");
  const batch = 256;
  let first = 0;
  for (let step = 0; step < 1000; step++) {
    const t = times(batch, rng);
    const loss = await trainer.step({
      x0: rng.normals(2 * batch),
      x1: gaussianTarget(batch, rng),
      t,
      coef: pathCoefficients(scheduler, t),
    });
    if (step === 0) first = loss;
  }
  const ema = await trainer.hostParams("ema");
  trainer.dispose();

  // Held-out loss of the EMA model vs the closed-form minimum.
  const evalRng = new Rng(99);
  const n = 8192;
  const t = times(n, evalRng);
  const x0 = evalRng.normals(2 * n);
  const { xt, target } = samplePath(scheduler, x0, gaussianTarget(n, evalRng), t);
  const field = modelField(model, ema, { sampleShape: [2] });
  let mse = 0;
  // Evaluate per time (the field takes one t per call) on a subsample, grouped by rounding t.
  for (let i = 0; i < 512; i++) {
    const v = await field.field(xt.subarray(2 * i, 2 * i + 2), t[i]);
    mse += ((v[0] - target[2 * i]) ** 2 + (v[1] - target[2 * i + 1]) ** 2) / 2;
  }
  mse /= 512;
  const floor = analyticMinimumLoss();
  console.log(`Gaussian CFM: first loss ${first.toFixed(3)}, held-out loss ${mse.toFixed(3)}, analytic minimum ${floor.toFixed(3)}`);
  assert.ok(mse < first / 2, "loss fell");
  assert.ok(mse > floor * 0.85, `held-out loss ${mse} cannot be far below the analytic minimum ${floor}`);
  assert.ok(mse < floor * 1.15, `held-out loss ${mse} should be within 15% of the analytic minimum ${floor}`);

  // Samples land on the target mean and standard deviation.
  const m = 4000;
  const { x } = await odeint(field.field, new Rng(5).normals(2 * m), { solver: "rk4", nfe: 40 });
  field.dispose();
  for (let j = 0; j < 2; j++) {
    let mean = 0;
    for (let i = 0; i < m; i++) mean += x[2 * i + j] / m;
    let v = 0;
    for (let i = 0; i < m; i++) v += (x[2 * i + j] - mean) ** 2 / (m - 1);
    console.log(`dim ${j}: mean ${mean.toFixed(3)} (target ${MU[j]}), std ${Math.sqrt(v).toFixed(3)} (target ${STD[j]})`);
    assert.ok(Math.abs(mean - MU[j]) < 0.1, `mean ${mean} vs ${MU[j]}`);
    assert.ok(Math.abs(Math.sqrt(v) - STD[j]) < 0.1 * STD[j] + 0.03, `std ${Math.sqrt(v)} vs ${STD[j]}`);
  }
});
