import { test } from "node:test";
import assert from "node:assert/strict";
import { slicedWasserstein2, mmdRbf, qualityReport, formatQuality } from "../src/core/metrics.js";
import { Rng } from "../src/core/rng.js";

const gauss = (n: number, seed: number, shift = [0, 0], scale = 1) => {
  const rng = new Rng(seed);
  const x = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) for (let d = 0; d < 2; d++) x[2 * i + d] = shift[d] + scale * rng.normal();
  return x;
};

const close = (actual: number, expected: number, tol: number, what: string) =>
  assert.ok(Math.abs(actual - expected) < tol, `${what}: ${actual}, expected ${expected} +- ${tol}`);

test("1-D W2 is exact on small empirical sets, including different sizes", () => {
  // In 1-D every direction is +-1 and W2 is sign-symmetric, so SW2 is the exact W2.
  close(slicedWasserstein2(Float32Array.of(0, 1, 2), Float32Array.of(2, 3, 4), 1), 2, 1e-9, "pure shift");
  // Quantile steps (0,1/2)->0, (1/2,1)->1 against thirds 0, 0.5, 1: W2^2 = 2 * (1/6) * 0.25 = 1/12.
  close(slicedWasserstein2(Float32Array.of(1, 0), Float32Array.of(0.5, 1, 0), 1), Math.sqrt(1 / 12), 1e-9, "sizes 2 vs 3");
  // Repeating every point gives the same empirical distribution.
  const x = gauss(300, 1);
  const doubled = new Float32Array(2 * x.length);
  doubled.set(x);
  doubled.set(x, x.length);
  close(slicedWasserstein2(x, doubled, 2), 0, 1e-9, "a set against itself repeated");
});

test("sliced W2 matches analytic values: 1-D scale change and a 2-D shift", () => {
  // 1-D: W2(N(0,1), N(0,s^2)) = |1 - s|.
  const rng = new Rng(1);
  const n = 20000;
  const a = rng.normals(n);
  for (const s of [0.5, 2]) close(slicedWasserstein2(a, rng.normals(n).map((v) => s * v), 1), Math.abs(1 - s), 0.03, `N(0,1) vs N(0,${s}^2)`);
  // 2-D shift d: projected shift |d| cos(theta), so SW2 = |d| sqrt(E cos^2) = |d| / sqrt(2).
  const x = gauss(5000, 2);
  const y = gauss(5000, 3, [3, 0]);
  close(slicedWasserstein2(x, y, 2, { directions: 512 }), 3 / Math.SQRT2, 0.1, "shift 3");
  close(slicedWasserstein2(x, gauss(5000, 4, [-1.2, 1.6]), 2, { directions: 512 }), 2 / Math.SQRT2, 0.1, "shift 2 on a diagonal");
  const same = slicedWasserstein2(x, gauss(5000, 5), 2);
  assert.ok(same < 0.08, `same distribution SW2 ${same}`);
  close(slicedWasserstein2(x, gauss(3000, 6, [3, 0]), 2, { directions: 512 }), 3 / Math.SQRT2, 0.12, "unequal sizes");
});

test("sliced W2 is symmetric, deterministic and validates shapes", () => {
  const x = gauss(500, 7);
  const y = gauss(400, 8, [0.5, 0]);
  assert.equal(slicedWasserstein2(x, y, 2), slicedWasserstein2(x, y, 2), "fixed directions");
  close(slicedWasserstein2(x, y, 2), slicedWasserstein2(y, x, 2), 1e-12, "symmetry");
  assert.notEqual(slicedWasserstein2(x, y, 2, { seed: 1 }), slicedWasserstein2(x, y, 2, { seed: 2 }), "seed picks the directions");
  assert.throws(() => slicedWasserstein2(x, new Float32Array(3), 2), RangeError);
  assert.throws(() => slicedWasserstein2(x, new Float32Array(0), 2), RangeError);
  assert.throws(() => slicedWasserstein2(x, y, 0), RangeError);
});

test("MMD matches the closed form: two point masses and two shifted Gaussians", () => {
  // Unbiased MMD^2 with a single bandwidth h on {0, 0} vs {d, d}: 1 + 1 - 2 exp(-d^2 / 2h^2).
  const d = 1.5;
  close(mmdRbf(Float32Array.of(0, 0), Float32Array.of(d, d), 1, { bandwidths: [1] }), 2 - 2 * Math.exp(-(d * d) / 2), 1e-7, "point masses");
  // N(0, I) vs N(mu, I) in 2-D, RBF h: MMD^2 = 2 h^2/(h^2+2) (1 - exp(-|mu|^2 / (2 (h^2+2)))).
  const h = 1;
  const expected = ((2 * h * h) / (h * h + 2)) * (1 - Math.exp(-1 / (2 * (h * h + 2))));
  close(mmdRbf(gauss(1500, 9), gauss(1500, 10, [1, 0]), 2, { bandwidths: [h] }), expected, 0.015, "shifted Gaussians");
});

test("MMD is ~0 for the same distribution and grows with the shift", () => {
  const x = gauss(800, 6);
  const same = mmdRbf(x, gauss(800, 7), 2);
  const near = mmdRbf(x, gauss(800, 8, [0.5, 0]), 2);
  const far = mmdRbf(x, gauss(800, 9, [2, 0]), 2);
  assert.ok(Math.abs(same) < 0.01, `same ${same}`);
  assert.ok(near > 5 * Math.abs(same) && far > near, `same ${same}, near ${near}, far ${far}`);
  // A set against itself: the cross term counts the n self-pairs (k = 6 kernels at distance 0) the
  // within-set terms leave out, so the unbiased estimate is slightly negative, above -12 / n.
  const self = mmdRbf(x, x, 2);
  assert.ok(self <= 0 && self > -12 / 800, `self ${self}`);
  assert.equal(mmdRbf(x, gauss(800, 8, [0.5, 0]), 2), near, "deterministic");
});

test("MMD subsamples large sets deterministically to maxSamples", () => {
  const big = gauss(3000, 11);
  const other = gauss(3000, 12, [1, 0]);
  const start = performance.now();
  const first = mmdRbf(big, other, 2, { maxSamples: 500 });
  const seconds = (performance.now() - start) / 1000;
  assert.equal(mmdRbf(big, other, 2, { maxSamples: 500 }), first);
  assert.ok(first > 0.05, `shift still visible after subsampling: ${first}`);
  assert.ok(seconds < 1, `500-point MMD took ${seconds}s`);
  assert.throws(() => mmdRbf(big, Float32Array.of(1, 2), 2), RangeError, "needs two points for the unbiased estimate");
  assert.throws(() => mmdRbf(big, other, 2, { bandwidths: [0] }), RangeError);
});

test("quality report compares against a noise floor from two fresh sets", () => {
  const fresh = (n: number, seed: number) => gauss(n, seed);
  const good = qualityReport(gauss(1000, 42), fresh, 2, 1000);
  const bad = qualityReport(gauss(1000, 43, [1, 1]), fresh, 2, 1000);
  assert.ok(good.sw2 < 2 * good.sw2Floor + 0.02, `good ${good.sw2} vs floor ${good.sw2Floor}`);
  assert.ok(bad.sw2 > 5 * bad.sw2Floor);
  close(bad.sw2, 1, 0.1, "shift (1, 1) has |d| / sqrt(2) = 1");
  assert.ok(bad.mmd > 10 * Math.abs(bad.mmdFloor), `bad MMD ${bad.mmd} vs floor ${bad.mmdFloor}`);
  assert.equal(good.sw2Floor, bad.sw2Floor, "the floor depends only on the data");
  const line = formatQuality({ sw2: 0.0832, sw2Floor: 0.0416, mmd: 0.00121, mmdFloor: -0.0000302 });
  assert.equal(line, "sliced-W2 0.0832 (noise floor 0.0416, 2.00x)  MMD 0.00121 (floor -0.0000302)");
  assert.match(formatQuality({ sw2: NaN, sw2Floor: 0.04, mmd: NaN, mmdFloor: 0 }), /^sliced-W2 NaN .* MMD NaN \(floor 0\)$/);
});
