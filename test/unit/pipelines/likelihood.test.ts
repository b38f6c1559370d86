// Exact log-likelihood: against the closed-form Gaussian density, finite-difference divergence,
// Hutchinson's estimator, and a trained checkerboard model on and off its squares.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initEngine } from "../../../src/engine/index.js";
import { Rng } from "../../../src/core/rng.js";
import { initMlp, mlpModel, type MlpConfig } from "../../../src/core/models/mlp.js";
import { modelField } from "../../../src/core/field.js";
import {
  logLikelihood,
  logLikelihoodWith,
  modelDivergenceField,
  gaussianLogDensity,
  bitsPerDim,
  type FieldWithDivergence,
  type ProbeKind,
} from "../../../src/core/likelihood.js";
import { trainToy } from "../../helpers/toy2d.js";
import { loadModel } from "../../../src/pipelines/model.js";
import { initUnetParams, unetModel } from "../../../src/core/models/unet.js";
import { dequantizeImages, logLikelihood2d } from "../../../src/pipelines/loglik.js";

// Straight path N(0, I) -> N(mu, diag s^2): v = mu + c_t (x - t mu), c_t = (t s^2 - (1 - t)) / sigma_t^2.
const MU = [1, -0.5];
const S = [0.6, 1.7];
const exactField: FieldWithDivergence = async (x, t) => {
  const v = new Float32Array(x.length);
  const div = new Float32Array(x.length / 2);
  for (let i = 0; i < x.length; i++) {
    const d = i % 2;
    const s2 = S[d] ** 2;
    const c = (t * s2 - (1 - t)) / ((1 - t) ** 2 + t * t * s2);
    v[i] = MU[d] + c * (x[i] - t * MU[d]);
    div[i >> 1] += c;
  }
  return { v, div };
};

test("log p of the exact Gaussian flow matches the closed-form density within 1e-3", async () => {
  const x = new Float32Array([1, -0.5, 0.2, 1.5, 2.1, -3, -0.4, 0.7]);
  const r = await logLikelihoodWith(exactField, x, { sampleShape: [2], rtol: 1e-7, atol: 1e-7 });
  let worst = 0;
  for (let i = 0; i < 4; i++) {
    let truth = 0;
    for (let d = 0; d < 2; d++) truth += -0.5 * Math.log(2 * Math.PI * S[d] ** 2) - (x[2 * i + d] - MU[d]) ** 2 / (2 * S[d] ** 2);
    assert.ok(Math.abs(r.logp[i] - truth) < 1e-3, `sample ${i}: ${r.logp[i]} vs ${truth}`);
    worst = Math.max(worst, Math.abs(r.logp[i] - truth));
  }
  console.log(`Gaussian flow: max |log p - closed form| = ${worst.toExponential(2)} over 4 points (nfe ${r.nfe})`);
  // A fixed-step solver gets there too, less precisely.
  const rk4 = await logLikelihoodWith(exactField, x, { sampleShape: [2], solver: "rk4", nfe: 200 });
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(rk4.logp[i] - r.logp[i]) < 1e-3, `rk4 sample ${i}: ${rk4.logp[i]} vs ${r.logp[i]}`);
  assert.ok(Math.abs(gaussianLogDensity(new Float32Array([0, 0]), 2)[0] + Math.log(2 * Math.PI)) < 1e-12);
  assert.ok(Math.abs(bitsPerDim(0, 784) - 7) < 1e-12, "log p = 0 on [-1, 1]^D is 7 bits per 8-bit pixel");
});

test("exact divergence of the MLP equals a finite-difference divergence; Hutchinson agrees within its standard error", async () => {
  await initEngine();
  const cfg: MlpConfig = { dim: 2, hidden: 32, depth: 2, timeEmbDim: 8 };
  const params = initMlp(cfg, new Rng(2));
  const model = mlpModel(cfg);
  const n = 6;
  const x = new Rng(3).normals(2 * n);
  const exact = modelDivergenceField(model, params, { sampleShape: [2], divergence: "exact" });
  const plain = modelField(model, params, { sampleShape: [2] });
  const { div } = await exact.field(x, 0.3);
  const h = 1e-2;
  for (let i = 0; i < n; i++) {
    let fd = 0;
    for (let d = 0; d < 2; d++) {
      const xp = x.slice();
      const xm = x.slice();
      xp[2 * i + d] += h;
      xm[2 * i + d] -= h;
      fd += ((await plain.field(xp, 0.3))[2 * i + d] - (await plain.field(xm, 0.3))[2 * i + d]) / (2 * h);
    }
    assert.ok(Math.abs(fd - div[i]) < 2e-3 * Math.max(1, Math.abs(fd)), `sample ${i}: jvp ${div[i]} vs fd ${fd}`);
  }
  // Hutchinson with 256 probes in one call ([K, n] estimates): the probe mean sits within 4 standard
  // errors of the exact divergence, for both probe kinds.
  const probes = 128;
  for (const probe of ["rademacher", "gaussian"] as ProbeKind[]) {
    const hutch = modelDivergenceField(model, params, { sampleShape: [2], divergence: { hutchinson: probes, seed: 100, probe } });
    assert.equal(hutch.estimates, probes);
    const est = (await hutch.field(x, 0.3)).div;
    hutch.dispose();
    assert.equal(est.length, probes * n);
    for (let i = 0; i < n; i++) {
      const vals = Array.from({ length: probes }, (_, k) => est[k * n + i]);
      const mean = vals.reduce((a, b) => a + b) / probes;
      const se = Math.sqrt(vals.reduce((a, b) => a + (b - mean) ** 2, 0) / (probes - 1) / probes);
      assert.ok(se > 0, "the estimator has variance");
      assert.ok(Math.abs(mean - div[i]) < 4 * se, `${probe} sample ${i}: Hutchinson ${mean} ± ${se} vs exact ${div[i]}`);
      if (i === 0)
        console.log(`divergence at t=0.3, ${probe} x${probes}: ${mean.toFixed(4)} ± ${se.toFixed(4)} vs exact ${div[i].toFixed(4)}`);
    }
  }
  exact.dispose();
  plain.dispose();
});

test("integrated log p: Hutchinson agrees with exact within its per-sample standard error", async () => {
  await initEngine();
  const cfg: MlpConfig = { dim: 2, hidden: 32, depth: 2, timeEmbDim: 8 };
  const params = initMlp(cfg, new Rng(4));
  const x = new Rng(5).normals(2 * 4);
  // Same fixed-step solver for both, so they follow the same path and differ only by probe noise.
  const opts = { sampleShape: [2], solver: "rk4" as const, nfe: 16 };
  const exact = await logLikelihood(mlpModel(cfg), params, x, { ...opts, divergence: "exact" });
  assert.equal(exact.stderr, undefined, "the exact divergence has no probe error");
  const hutch = await logLikelihood(mlpModel(cfg), params, x, { ...opts, divergence: { hutchinson: 32, seed: 9 } });
  for (let i = 0; i < 4; i++) {
    const se = hutch.stderr?.[i] ?? 0;
    assert.ok(se > 0, "per-sample standard error over probes");
    assert.ok(
      Math.abs(hutch.logp[i] - exact.logp[i]) < 4 * se,
      `MLP sample ${i}: Hutchinson ${hutch.logp[i]} ± ${se} vs exact ${exact.logp[i]}`,
    );
  }
  console.log(
    `MLP log p (sample 0): exact ${exact.logp[0].toFixed(4)}, Hutchinson x32 ${hutch.logp[0].toFixed(4)} ± ${hutch.stderr?.[0].toFixed(4)}`,
  );
});

test("UNet divergence on [n, H, W, C] images with labels: Hutchinson probes agree with the exact trace", async () => {
  await initEngine();
  // A 2x2 one-channel UNet; its output conv starts at zero, so jitter every weight to get a non-trivial field.
  const ucfg = { channels: [8, 8], timeEmbDim: 8, groups: 4, numClasses: 3, inChannels: 1, height: 2, width: 2 };
  const jitter = new Rng(8);
  const uparams = initUnetParams(ucfg, new Rng(6));
  for (const p of Object.values(uparams)) p.data = p.data.map((v) => v + 0.3 * jitter.normal());
  const imgs = new Rng(7).normals(2 * 4).map((v) => Math.tanh(v));
  const labels = new Int32Array([0, 2]);
  const exact = modelDivergenceField(unetModel(ucfg), uparams, { sampleShape: [2, 2, 1], divergence: "exact", labels });
  const { v, div } = await exact.field(imgs, 0.6);
  exact.dispose();
  assert.ok(v.some((x) => x !== 0) && div.every((d) => Number.isFinite(d) && d !== 0), `non-trivial field: div ${Array.from(div)}`);
  const probes = 24;
  const hutch = modelDivergenceField(unetModel(ucfg), uparams, {
    sampleShape: [2, 2, 1],
    divergence: { hutchinson: probes, seed: 2 },
    labels,
  });
  const est = (await hutch.field(imgs, 0.6)).div;
  hutch.dispose();
  for (let i = 0; i < 2; i++) {
    const vals = Array.from({ length: probes }, (_, k) => est[k * 2 + i]);
    const mean = vals.reduce((a, b) => a + b) / probes;
    const se = Math.sqrt(vals.reduce((a, b) => a + (b - mean) ** 2, 0) / (probes - 1) / probes);
    assert.ok(se > 0 && Math.abs(mean - div[i]) < 4 * se, `UNet image ${i}: Hutchinson ${mean} ± ${se} vs exact ${div[i]}`);
    console.log(`UNet divergence, image ${i}: exact ${div[i].toFixed(3)}, Hutchinson x${probes} ${mean.toFixed(3)} ± ${se.toFixed(3)}`);
  }
});

test("dequantisation recovers the 8-bit pixel and adds noise inside its bin", () => {
  const k = Int32Array.from({ length: 256 }, (_, i) => i);
  const stored = Float32Array.from(k, (b) => (b / 255) * 2 - 1);
  const x = dequantizeImages(stored, 3);
  for (let i = 0; i < 256; i++) {
    const bin = ((x[i] + 1) * 256) / 2 - k[i];
    assert.ok(bin >= 0 && bin < 1, `pixel ${k[i]} -> ${x[i]} falls in bin offset ${bin}`);
  }
  assert.notDeepEqual(dequantizeImages(stored, 3), dequantizeImages(stored, 4), "the seed picks the noise");
});

test("a trained checkerboard model gives held-out data clearly higher likelihood than empty squares", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-loglik-"));
  try {
    await trainToy({ dataset: "checkerboard", steps: 2000, model: { dim: 2, hidden: 128, depth: 3, timeEmbDim: 16 }, out: dir });
    const loaded = await loadModel(dir, { kind: "2d" });
    const rng = new Rng(77);
    // 100 points each: the gap (about 2.3 nats) is over ten standard errors (about 0.15 at this n).
    const on = new Float32Array(200);
    const off = new Float32Array(200);
    // Centres of filled squares (cx + cy even) vs empty ones (odd), jittered inside the square.
    for (let i = 0; i < 100; i++) {
      for (const [arr, parity] of [
        [on, 0],
        [off, 1],
      ] as const) {
        let cx: number;
        let cy: number;
        do {
          cx = rng.int(4) - 2;
          cy = rng.int(4) - 2;
        } while ((((cx + cy) % 2) + 2) % 2 !== parity);
        arr[2 * i] = 2 * cx + 0.4 + 1.2 * rng.uniform();
        arr[2 * i + 1] = 2 * cy + 0.4 + 1.2 * rng.uniform();
      }
    }
    const a = await logLikelihood2d(loaded, on, { rtol: 1e-4, atol: 1e-4 });
    const b = await logLikelihood2d(loaded, off, { rtol: 1e-4, atol: 1e-4 });
    console.log(
      `checkerboard mean log p: filled squares ${a.mean.toFixed(3)} ± ${a.stderr.toFixed(3)}, empty squares ${b.mean.toFixed(3)} ± ${b.stderr.toFixed(3)} (nfe ${a.nfe})`,
    );
    assert.ok(a.mean > b.mean + 1, `filled ${a.mean} vs empty ${b.mean}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
