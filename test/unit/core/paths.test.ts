import { test } from "node:test";
import assert from "node:assert/strict";
import { getScheduler, PATHS, samplePath, straightScheduler } from "../../../src/core/paths.js";
import { getTimeSampler } from "../../../src/core/timeSamplers.js";
import { Rng } from "../../../src/core/rng.js";
import { UserError } from "../../../src/core/errors.js";

test("straight path target is x1 - x0 at every t (never (x1 - x0) / t)", () => {
  const rng = new Rng(1);
  const n = 64;
  const x0 = rng.normals(2 * n);
  const x1 = rng.normals(2 * n).map((v) => 3 * v + 1);
  const t = rng.uniforms(n);
  const { xt, target } = samplePath(straightScheduler, x0, x1, t);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < 2; j++) {
      const k = 2 * i + j;
      assert.ok(Math.abs(target[k] - (x1[k] - x0[k])) < 1e-6);
      assert.ok(Math.abs(xt[k] - ((1 - t[i]) * x0[k] + t[i] * x1[k])) < 1e-5);
    }
  }
});

test("every scheduler's derivatives match finite differences and its endpoints are noise and data", () => {
  for (const name of PATHS) {
    const s = getScheduler(name);
    for (const t of [0.05, 0.3, 0.5, 0.77, 0.95]) {
      const h = 1e-6;
      const a = s.at(t + h);
      const b = s.at(t - h);
      const c = s.at(t);
      assert.ok(Math.abs((a.alpha - b.alpha) / (2 * h) - c.dAlpha) < 1e-4 * Math.max(1, Math.abs(c.dAlpha)), `${name} dAlpha at ${t}`);
      assert.ok(Math.abs((a.sigma - b.sigma) / (2 * h) - c.dSigma) < 1e-4 * Math.max(1, Math.abs(c.dSigma)), `${name} dSigma at ${t}`);
    }
    const start = s.at(0);
    const end = s.at(s.tMax);
    // VP only approaches pure noise: alpha_0 = exp(-(beta_min + beta_max) / 4) = 6.6e-3.
    assert.ok(start.alpha < 1e-2 && Math.abs(start.sigma - 1) < 1e-3, `${name} starts at noise`);
    assert.ok(Math.abs(end.alpha - 1) < 1e-3 && end.sigma < 0.01, `${name} ends at data`);
  }
});

test("variance-preserving paths keep alpha^2 + sigma^2 = 1", () => {
  for (const name of ["vp", "cosine"]) {
    const s = getScheduler(name);
    for (const t of [0.1, 0.5, 0.9]) {
      const c = s.at(t);
      assert.ok(Math.abs(c.alpha ** 2 + c.sigma ** 2 - 1) < 1e-6, `${name} at ${t}`);
    }
  }
});

test("time samplers have the moments of their distributions", () => {
  const rng = new Rng(7);
  const n = 40000;
  const stats = (x: Float32Array) => {
    let m = 0;
    for (const v of x) m += v;
    m /= x.length;
    let v2 = 0;
    for (const v of x) v2 += (v - m) ** 2;
    return { mean: m, variance: v2 / (x.length - 1), min: Math.min(...x), max: Math.max(...x) };
  };
  const u = stats(getTimeSampler("uniform")(n, rng));
  assert.ok(Math.abs(u.mean - 0.5) < 0.01 && Math.abs(u.variance - 1 / 12) < 0.003);
  const a = 0.5;
  const b = stats(getTimeSampler("u-shaped", { a })(n, rng));
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.125 for a = 1/2 — larger than uniform's 1/12.
  assert.ok(Math.abs(b.mean - 0.5) < 0.01 && Math.abs(b.variance - 1 / (4 * (2 * a + 1))) < 0.004);
  const ln = getTimeSampler("logit-normal")(n, rng);
  const sorted = Float32Array.from(ln).sort();
  assert.ok(Math.abs(sorted[n >> 1] - 0.5) < 0.01, "logit-normal median is sigmoid(0)");
  const l = stats(ln);
  assert.ok(l.min > 0 && l.max < 1 && l.variance < 1 / 12, "logit-normal concentrates in the middle");
  const lt = getTimeSampler("late")(n, rng);
  const late = stats(lt);
  // Density 2t on [0, 1]: mean 2/3, variance 1/2 - 4/9 = 1/18, and P(t < 1/2) = 1/4.
  assert.ok(Math.abs(late.mean - 2 / 3) < 0.01 && Math.abs(late.variance - 1 / 18) < 0.003, JSON.stringify(late));
  assert.ok(late.min >= 0 && late.max < 1);
  const below = lt.filter((t) => t < 0.5).length / n;
  assert.ok(Math.abs(below - 0.25) < 0.01, `P(t < 1/2) = ${below}`);
});

test("unknown path or time sampler names list the valid choices", () => {
  assert.throws(
    () => getScheduler("curvy"),
    (e: unknown) => e instanceof UserError && /straight, vp, cosine/.test(e.message),
  );
  assert.throws(
    () => getTimeSampler("gauss"),
    (e: unknown) => e instanceof UserError && /uniform, logit-normal, u-shaped, late/.test(e.message),
  );
  assert.throws(() => getTimeSampler("u-shaped", { a: 2 }), UserError);
});
