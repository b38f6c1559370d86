// Samples with their log-density in one forward pass: exact against a closed-form flow, the same
// evaluations as a plain solve, agreement with the backward likelihood of the same points under a
// model, and `flowmatch loglik --sample` as a user runs it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { logLikelihood, sampleWithLogDensity, sampleWithLogDensityWith, type FieldWithDivergence } from "../../../src/core/likelihood.js";
import { odeint, type VelocityField } from "../../../src/core/solvers.js";
import { initMlp, mlpModel } from "../../../src/core/models/mlp.js";
import { Rng } from "../../../src/core/rng.js";
import { initEngine } from "../../../src/engine/index.js";
import { runCli, tempDir, trainTiny2d } from "../../helpers/cli.js";

// Straight path from N(0, I) to N(mu, diag(s^2)): v_d = mu_d + a_d(t) (x_d - t mu_d) with
// a_d = (t s_d^2 - (1 - t)) / ((1 - t)^2 + t^2 s_d^2), so div v = a_0 + a_1 exactly.
const MU = [1.5, -2];
const S = [0.5, 2];
const slope = (d: number, t: number) => (t * S[d] ** 2 - (1 - t)) / ((1 - t) ** 2 + t * t * S[d] ** 2);
const velocity: VelocityField = (x, t) => x.map((v, i) => MU[i % 2] + slope(i % 2, t) * (v - t * MU[i % 2]));
let calls = 0;
const gaussian: FieldWithDivergence = async (x, t) => {
  calls++;
  return { v: velocity(x, t) as Float32Array, div: new Float32Array(x.length / 2).fill(slope(0, t) + slope(1, t)) };
};
const logNormal = (x: number, m: number, s: number) => -0.5 * Math.log(2 * Math.PI) - Math.log(s) - ((x - m) / s) ** 2 / 2;

test("one forward pass gives the samples and their exact log-density (closed-form Gaussian flow)", async () => {
  const x0 = new Rng(1).normals(2 * 500);
  calls = 0;
  const r = await sampleWithLogDensityWith(gaussian, x0, { sampleShape: [2], solver: "rk4", nfe: 80 });
  assert.equal(r.nfe, 80);
  assert.equal(calls, 80, "velocity and divergence come from the same 80 calls");
  const plain = await odeint(velocity, x0, { solver: "rk4", nfe: 80 });
  for (let i = 0; i < 500; i++) {
    assert.ok(Math.abs(r.x[2 * i] - plain.x[2 * i]) < 1e-5, "the samples are the plain solve's");
    const want = logNormal(r.x[2 * i], MU[0], S[0]) + logNormal(r.x[2 * i + 1], MU[1], S[1]);
    assert.ok(Math.abs(r.logp[i] - want) < 1e-3, `sample ${i}: log p ${r.logp[i]} vs exact ${want}`);
  }
});

test("under a model, the forward log-density of each sample matches its backward log-likelihood", async () => {
  await initEngine();
  const config = { dim: 2, hidden: 32, depth: 2, timeEmbDim: 8 };
  const params = initMlp(config, new Rng(3));
  const model = mlpModel(config);
  const x0 = new Rng(4).normals(2 * 64);
  const fwd = await sampleWithLogDensity(model, params, x0, { sampleShape: [2], divergence: "exact", solver: "rk4", nfe: 60 });
  const back = await logLikelihood(model, params, fwd.x, { sampleShape: [2], divergence: "exact", solver: "rk4", nfe: 60 });
  for (let i = 0; i < 64; i++) {
    assert.ok(Math.abs(fwd.logp[i] - back.logp[i]) < 2e-3, `sample ${i}: forward ${fwd.logp[i]} vs backward ${back.logp[i]}`);
    assert.ok(Math.abs(back.x0[2 * i] - x0[2 * i]) < 1e-3, "the backward solve returns to the noise");
  }
});

test("loglik --sample writes samples with their log p; scoring those points backwards agrees", () => {
  const dir = tempDir();
  try {
    const ckpt = join(dir, "ckpt");
    trainTiny2d(ckpt, 30);
    const out = join(dir, "s");
    const r = runCli(["loglik", "--ckpt", ckpt, "--sample", "--n", "100", "--solver", "rk4", "--seed", "2", "--out", out]);
    assert.equal(r.code, 0, r.err);
    const m =
      /100 samples with their log-density in one pass: mean log p (-?\d+\.\d+) ± \d+\.\d+ nats \(exact divergence, rk4, 48 evaluations/.exec(
        r.out,
      );
    assert.ok(m, r.out);
    const rows = readFileSync(join(out, "samples_logp.csv"), "utf8").trim().split("\n");
    assert.equal(rows[0], "x,y,logp");
    assert.equal(rows.length, 101);
    const points = join(dir, "points.csv");
    writeFileSync(
      points,
      rows
        .slice(1)
        .map((l) => l.split(",").slice(0, 2).join(","))
        .join("\n"),
    );
    const back = runCli(["loglik", "--ckpt", ckpt, "--data", points, "--solver", "rk4", "--no-density"]);
    assert.equal(back.code, 0, back.err);
    const b = /: (-?\d+\.\d+) ± /.exec(back.out);
    assert.ok(b, back.out);
    assert.ok(Math.abs(Number(b[1]) - Number(m[1])) < 0.02, `forward mean ${m[1]} vs backward ${b[1]}`);
    const image = runCli(["loglik", "--ckpt", ckpt, "--sample", "--data", points]);
    assert.equal(image.code, 1);
    assert.match(image.err, /--sample draws new points from the model; drop --data/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
