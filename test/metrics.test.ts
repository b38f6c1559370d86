import { test } from "node:test";
import assert from "node:assert/strict";
import { slicedWasserstein2, mmdRbf, qualityReport } from "../src/core/metrics.js";
import { Rng } from "../src/core/rng.js";

const gauss = (n: number, seed: number, shift = [0, 0], scale = 1) => {
  const rng = new Rng(seed);
  const x = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) for (let d = 0; d < 2; d++) x[2 * i + d] = shift[d] + scale * rng.normal();
  return x;
};

test("sliced W2 matches analytic values: 1-D scale change and a 2-D shift", () => {
  // 1-D: W2(N(0,1), N(0,s^2)) = |1 - s|.
  const rng = new Rng(1);
  const n = 20000;
  const a = rng.normals(n);
  const b = rng.normals(n).map((v) => 2 * v);
  assert.ok(Math.abs(slicedWasserstein2(a, b, 1) - 1) < 0.03);
  // 2-D shift d: projected shift |d| cos(theta), so SW2 = |d| sqrt(E cos^2) = |d| / sqrt(2).
  const x = gauss(5000, 2);
  const y = gauss(5000, 3, [3, 0]);
  const sw = slicedWasserstein2(x, y, 2, { directions: 512 });
  assert.ok(Math.abs(sw - 3 / Math.SQRT2) < 0.1, `shift SW2 ${sw}`);
  const same = slicedWasserstein2(x, gauss(5000, 4), 2);
  assert.ok(same < 0.08, `same distribution SW2 ${same}`);
  // Unequal sizes go through quantile interpolation.
  assert.ok(Math.abs(slicedWasserstein2(x, gauss(3000, 5, [3, 0]), 2, { directions: 512 }) - 3 / Math.SQRT2) < 0.12);
});

test("MMD is ~0 for the same distribution and grows with the shift", () => {
  const x = gauss(800, 6);
  const same = mmdRbf(x, gauss(800, 7), 2);
  const near = mmdRbf(x, gauss(800, 8, [0.5, 0]), 2);
  const far = mmdRbf(x, gauss(800, 9, [2, 0]), 2);
  assert.ok(Math.abs(same) < 0.01, `same ${same}`);
  assert.ok(near > 5 * Math.abs(same) && far > near, `same ${same}, near ${near}, far ${far}`);
});

test("quality report compares against a noise floor from two fresh sets", () => {
  const fresh = (n: number, seed: number) => gauss(n, seed);
  const good = qualityReport(gauss(1000, 42), fresh, 2, 1000);
  const bad = qualityReport(gauss(1000, 43, [1, 1]), fresh, 2, 1000);
  assert.ok(good.sw2 < 2 * good.sw2Floor + 0.02, `good ${good.sw2} vs floor ${good.sw2Floor}`);
  assert.ok(bad.sw2 > 5 * bad.sw2Floor);
  assert.equal(good.sw2Floor, bad.sw2Floor, "the floor depends only on the data");
});
