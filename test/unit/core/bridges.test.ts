// Schrodinger-bridge CFM and entropic OT against closed forms: torchcfm's x_t and u_t formulas
// under a fixed seed, u_t as the time derivative of the bridge (finite differences), the bridge's
// variance, the packed batch through the real CFM loss, the 2x2 Sinkhorn plan, its limits
// (independent pairing / exact OT), sampling from the plan, and OT pairing within classes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { bridgeBatch, bridgePath } from "../../../src/core/bridges.js";
import { sinkhornCouple, sinkhornPlan, squaredDistances } from "../../../src/core/sinkhorn.js";
import { otAssignment, otCouple, otCoupleByClass } from "../../../src/core/coupling.js";
import { samplePath, straightScheduler } from "../../../src/core/paths.js";
import { cfmLoss } from "../../../src/core/train.js";
import type { VelocityModel } from "../../../src/core/models/family.js";
import { fromHost, initEngine, toHost } from "../../../src/engine/index.js";
import { Rng } from "../../../src/core/rng.js";
import { UserError } from "../../../src/core/errors.js";
import { trainToy } from "../../helpers/toy2d.js";
import { loadModel } from "../../../src/pipelines/model.js";
import { compare2d } from "../../../src/pipelines/compare2d.js";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../helpers/cli.js";

function batch(seed: number, n: number, dim: number) {
  const rng = new Rng(seed);
  return { x0: rng.normals(n * dim), x1: rng.normals(n * dim).map((v) => 2 * v + 1), t: rng.uniforms(n), eps: rng.normals(n * dim) };
}

test("bridge x_t and u_t are torchcfm's formulas under a fixed seed; sigma = 0 is the straight path exactly", () => {
  const { x0, x1, t, eps } = batch(1, 64, 3);
  const sigma = 0.7;
  const { xt, ut } = bridgePath(x0, x1, t, eps, sigma);
  for (let i = 0; i < 64; i++) {
    const ti = t[i];
    for (let k = 3 * i; k < 3 * i + 3; k++) {
      // torchcfm: mu_t = t x1 + (1 - t) x0; sigma_t = sigma sqrt(t (1 - t)); x_t = mu_t + sigma_t eps;
      // u_t = (1 - 2t) / (2 t (1 - t) + 1e-8) (x_t - mu_t) + x1 - x0.
      const mu = ti * x1[k] + (1 - ti) * x0[k];
      const x = mu + sigma * Math.sqrt(ti * (1 - ti)) * eps[k];
      assert.ok(Math.abs(xt[k] - x) < 1e-5, `x_t row ${i}`);
      assert.ok(Math.abs(ut[k] - ((1 - 2 * ti) / (2 * ti * (1 - ti) + 1e-8)) * (x - mu) - (x1[k] - x0[k])) < 1e-4, `u_t row ${i}`);
    }
  }
  const straight = samplePath(straightScheduler, x0, x1, t);
  const zero = bridgePath(x0, x1, t, eps, 0);
  assert.deepEqual(zero.xt, straight.xt);
  assert.deepEqual(zero.ut, straight.target);
  // Finite at the ends, where the bridge has no noise: t = 0 and 1 give x0 / x1 and target x1 - x0.
  const ends = bridgePath(x0.subarray(0, 6), x1.subarray(0, 6), new Float32Array([0, 1]), eps.subarray(0, 6), sigma);
  for (let k = 0; k < 3; k++) {
    assert.equal(ends.xt[k], x0[k]);
    assert.ok(Math.abs(ends.xt[3 + k] - x1[3 + k]) < 1e-6);
    assert.ok(Math.abs(ends.ut[k] - (x1[k] - x0[k])) < 1e-6);
  }
});

test("u_t is the time derivative of the bridge x_t(eps) for fixed eps (central differences)", () => {
  const { x0, x1, eps } = batch(2, 40, 2);
  const sigma = 1.3;
  const h = 1e-4;
  for (const tv of [0.05, 0.3, 0.5, 0.71, 0.95]) {
    const at = (s: number) => bridgePath(x0, x1, new Float32Array(40).fill(s), eps, sigma);
    const { ut } = at(tv);
    const plus = at(tv + h).xt;
    const minus = at(tv - h).xt;
    // float32 states: the difference quotient carries ~1e-7 / 1e-4 = 1e-3 of rounding.
    for (let k = 0; k < ut.length; k++)
      assert.ok(Math.abs(ut[k] - (plus[k] - minus[k]) / (2 * h)) < 1e-2, `t=${tv} k=${k}: ${ut[k]} vs FD`);
  }
});

test("the bridge's spread around t x1 + (1 - t) x0 is sigma^2 t (1 - t)", () => {
  const n = 40000;
  const sigma = 0.8;
  const x0 = new Float32Array(n).fill(-1);
  const x1 = new Float32Array(n).fill(2);
  for (const tv of [0.1, 0.5, 0.8]) {
    const { xt } = bridgePath(x0, x1, new Float32Array(n).fill(tv), new Rng(3).normals(n), sigma);
    let m = 0;
    for (const v of xt) m += v / n;
    let v2 = 0;
    for (const v of xt) v2 += (v - m) ** 2 / (n - 1);
    const want = sigma * sigma * tv * (1 - tv);
    assert.ok(Math.abs(m - (3 * tv - 1)) < 4 * Math.sqrt(want / n), `t=${tv}: mean ${m}`);
    assert.ok(Math.abs(v2 - want) < 4 * want * Math.sqrt(2 / n), `t=${tv}: variance ${v2} vs ${want}`);
  }
});

test("a bridge batch through the real CFM loss regresses on u_t at x_t", async () => {
  await initEngine();
  const n = 32;
  const { x0, x1, t } = batch(4, n, 2);
  const b = bridgeBatch(x0, x1, t, 0.5, new Rng(9));
  const { xt, ut } = bridgePath(x0, x1, t, new Rng(9).normals(2 * n), 0.5);
  // A "model" that returns its input: the loss is mean((x_t - u_t)^2).
  const identity: VelocityModel = { apply: (_p, x) => x };
  const col = (c: number) =>
    fromHost(
      b.coef.filter((_, i) => i % 4 === c),
      [n, 1],
    );
  const loss = (
    await toHost(
      cfmLoss(identity, {}, fromHost(b.x0, [n, 2]), fromHost(b.x1, [n, 2]), fromHost(t, [n]), col(0), col(1), col(2), col(3), null),
    )
  )[0];
  let want = 0;
  for (let k = 0; k < 2 * n; k++) want += (xt[k] - ut[k]) ** 2 / (2 * n);
  assert.ok(Math.abs(loss - want) < 1e-5 * Math.max(1, want), `loss ${loss} vs ${want}`);
});

test("Sinkhorn: the 2x2 plan in closed form, marginals met, and the two limits of reg", () => {
  // Cost [[0, 1], [1, 0]], uniform marginals: P = K / (2 (1 + e^{-1/reg})), K = [[1, e^{-1/reg}], [e^{-1/reg}, 1]].
  for (const reg of [0.05, 0.3, 1, 10]) {
    const { plan } = sinkhornPlan(new Float64Array([0, 1, 1, 0]), 2, 2, { reg });
    const diag = 1 / (2 * (1 + Math.exp(-1 / reg)));
    assert.ok(Math.abs(plan[0] - diag) < 1e-9 && Math.abs(plan[3] - diag) < 1e-9, `reg ${reg}: ${plan}`);
    assert.ok(Math.abs(plan[1] - (0.5 - diag)) < 1e-9, `reg ${reg}: ${plan}`);
  }
  const rng = new Rng(5);
  const n = 12;
  const x0 = rng.normals(2 * n);
  const x1 = rng.normals(2 * n).map((v) => v + 1);
  const cost = squaredDistances(x0, x1, 2);
  const small = sinkhornPlan(cost, n, n, { reg: 0.05, maxIter: 20000 });
  assert.ok(small.error < 1e-7, `converged to ${small.error} in ${small.iterations} iterations`);
  for (let i = 0; i < n; i++) {
    let r = 0;
    let c = 0;
    for (let j = 0; j < n; j++) (r += small.plan[i * n + j]), (c += small.plan[j * n + i]);
    assert.ok(Math.abs(r - 1 / n) < 1e-7 && Math.abs(c - 1 / n) < 1e-7, `row ${i} sums to ${r}, column to ${c}`);
  }
  const planCost = (p: Float64Array) => p.reduce((s, v, k) => s + v * cost[k], 0);
  // Small reg: the transport cost approaches the exact assignment's and most mass sits on it.
  const perm = otAssignment(x0, x1, 2);
  let exact = 0;
  let onPerm = 0;
  for (let i = 0; i < n; i++) (exact += cost[i * n + perm[i]] / n), (onPerm += small.plan[i * n + perm[i]]);
  assert.ok(planCost(small.plan) >= exact - 1e-9 && planCost(small.plan) < 1.01 * exact, `cost ${planCost(small.plan)} vs exact ${exact}`);
  assert.ok(onPerm > 0.75, `mass on the exact assignment ${onPerm}`);
  const mid = sinkhornPlan(cost, n, n, { reg: 0.5 });
  assert.ok(planCost(mid.plan) > planCost(small.plan), "a larger reg transports at a higher cost");
  // Large reg: independent pairing, every entry near 1 / n^2, cost the mean of C.
  const big = sinkhornPlan(cost, n, n, { reg: 1e4 });
  assert.ok(big.plan.every((p) => Math.abs(p - 1 / (n * n)) < 1e-3 / (n * n)));
  assert.ok(Math.abs(planCost(big.plan) - cost.reduce((s, v) => s + v, 0) / (n * n)) < 1e-3);
  // A reg far below the costs cannot converge in the iterations allowed: coupling refuses it.
  assert.throws(
    () => sinkhornCouple(x0, x1, 2, rng, { reg: 1e-3 }),
    (e: unknown) => e instanceof UserError && /Sinkhorn did not converge at --reg 0.001.*raise --reg/.test(e.message),
  );
  assert.throws(
    () => sinkhornPlan(cost, n, n, { reg: 0 }),
    (e: unknown) => e instanceof UserError && /--reg must be a positive number/.test(e.message),
  );
});

test("sinkhorn pairs are drawn with the plan's frequencies and shorten paths as reg shrinks", () => {
  // Half the points at 0, half at 1, reg 1: by symmetry P_ij is proportional to e^{-C_ij}, so a
  // drawn pair joins equal points with probability 1 / (1 + e^-1) = 0.731.
  const draws = 400;
  const x0 = Float32Array.from({ length: draws }, (_, i) => i % 2);
  const rng = new Rng(6);
  const c = sinkhornCouple(x0, x0, 1, rng, { reg: 1 });
  let same = 0;
  for (let r = 0; r < draws; r++) if (c.x0[r] === c.x1[r]) same++;
  const p = 1 / (1 + Math.exp(-1));
  assert.ok(Math.abs(same / draws - p) < 4 * Math.sqrt((p * (1 - p)) / draws), `equal-point share ${same / draws} vs ${p}`);
  const r2 = new Rng(7);
  const n = 128;
  const a = r2.normals(2 * n);
  const b = r2.normals(2 * n).map((v) => 3 * v);
  const meanCost = (u: Float32Array, v: Float32Array) => u.reduce((s, _, k) => s + (u[k] - v[k]) ** 2, 0) / n;
  const independent = meanCost(a, b);
  const exact = meanCost(a, otCouple(a, b, 2).x1);
  const entropic = sinkhornCouple(a, b, 2, r2, { reg: 0.1 });
  const loose = sinkhornCouple(a, b, 2, r2, { reg: 100 });
  assert.ok(meanCost(entropic.x0, entropic.x1) < 1.5 * exact, `reg 0.1 cost ${meanCost(entropic.x0, entropic.x1)} vs exact ${exact}`);
  assert.ok(meanCost(loose.x0, loose.x1) > 0.8 * independent, `reg 100 cost ${meanCost(loose.x0, loose.x1)} vs independent ${independent}`);
});

test("class-aware OT pairs within each class at minimum cost and keeps x0 | label standard normal", () => {
  const rng = new Rng(8);
  const n = 256;
  const labels = Int32Array.from({ length: n }, (_, i) => i % 2);
  // Class 0 far to the left, class 1 far to the right.
  const x1 = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    x1[2 * i] = (labels[i] === 0 ? -4 : 4) + 0.3 * rng.normal();
    x1[2 * i + 1] = 0.3 * rng.normal();
  }
  const x0 = rng.normals(2 * n);
  const { x0: paired } = otCoupleByClass(x0, x1, 2, labels);
  // A permutation of the noise rows.
  const key = (a: Float32Array, i: number) => `${a[2 * i]},${a[2 * i + 1]}`;
  assert.deepEqual(Array.from({ length: n }, (_, i) => key(paired, i)).sort(), Array.from({ length: n }, (_, i) => key(x0, i)).sort());
  const meanX = (a: Float32Array, cls: number) => {
    let s = 0;
    let c = 0;
    for (let i = 0; i < n; i++) if (labels[i] === cls) (s += a[2 * i]), c++;
    return s / c;
  };
  // Within a class the noise is a fair share: its mean stays near 0. Global OT hands class 0 the left noise.
  assert.ok(Math.abs(meanX(paired, 0)) < 0.3 && Math.abs(meanX(paired, 1)) < 0.3, `class means ${meanX(paired, 0)}, ${meanX(paired, 1)}`);
  const global = new Float32Array(2 * n);
  const perm = otAssignment(x0, x1, 2);
  for (let i = 0; i < n; i++) global.set(x0.subarray(2 * i, 2 * i + 2), 2 * perm[i]);
  assert.ok(meanX(global, 0) < -0.5, `global OT class-0 noise mean ${meanX(global, 0)}`);
  // Within each class the pairing is optimal: no swap of two same-class partners lowers the cost.
  const d = (i: number, a: Float32Array, j: number) => (a[2 * i] - x1[2 * j]) ** 2 + (a[2 * i + 1] - x1[2 * j + 1]) ** 2;
  for (let i = 0; i < n; i += 7) {
    for (let j = i + 2; j < n; j += 10) {
      if (labels[i] !== labels[j]) continue;
      assert.ok(d(i, paired, i) + d(j, paired, j) <= d(i, paired, j) + d(j, paired, i) + 1e-4, `swap ${i}, ${j} would be cheaper`);
    }
  }
});

test("trained on 8gaussians, entropic OT and the Schrodinger bridge straighten the flow and improve one-step samples", async () => {
  const dir = tempDir();
  try {
    const model = { dim: 2, hidden: 32, depth: 2, timeEmbDim: 16 };
    const variants = [
      { name: "independent", extra: {} },
      { name: "sinkhorn", extra: { coupling: "sinkhorn" as const, reg: 0.5 } },
      { name: "sb", extra: { coupling: "sinkhorn" as const, reg: 0.5, bridgeSigma: 0.5 } },
    ];
    for (const v of variants) {
      await trainToy({ dataset: "8gaussians", steps: 300, batchSize: 64, model, out: join(dir, v.name), ...v.extra });
    }
    const models = await Promise.all(
      variants.map(async (v) => ({ name: v.name, loaded: await loadModel(join(dir, v.name), { kind: "2d" }) })),
    );
    const r = await compare2d(models, { nfes: [1], n: 1000, seed: 5, out: join(dir, "cmp") });
    const [ind, sk, sb] = r.straightness;
    const sw2 = r.rows[0].quality.map((q) => q.sw2);
    console.log(
      `straightness ${r.straightness.map((x) => x.toFixed(4)).join(" / ")}; NFE-1 sliced-W2 ${sw2.map((x) => x.toFixed(3)).join(" / ")} (independent / sinkhorn / sb)`,
    );
    assert.ok(sk < 0.25 * ind && sb < 0.25 * ind, `straightness ${r.straightness}`);
    assert.ok(sw2[1] < 0.85 * sw2[0] && sw2[2] < 0.85 * sw2[0], `NFE-1 sliced-W2 ${sw2}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
