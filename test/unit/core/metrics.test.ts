import { test } from "node:test";
import assert from "node:assert/strict";
import {
  slicedWasserstein2,
  mmdRbf,
  qualityReport,
  formatQuality,
  precisionRecall,
  knnRadiiSquared,
  outsideFraction,
  histogramTV,
  type QualityReport,
} from "../../../src/core/metrics.js";
import { Rng } from "../../../src/core/rng.js";
import { sampleToy, toyDensity } from "../../../src/data/toy2d.js";

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
  for (const s of [0.5, 2])
    close(
      slicedWasserstein2(
        a,
        rng.normals(n).map((v) => s * v),
        1,
      ),
      Math.abs(1 - s),
      0.03,
      `N(0,1) vs N(0,${s}^2)`,
    );
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
  assert.equal(line, "sliced-W2 0.0832 (floor 0.0416)  MMD 0.00121 (floor -0.0000302)");
  assert.match(formatQuality({ sw2: NaN, sw2Floor: 0.04, mmd: NaN, mmdFloor: 0 }), /^sliced-W2 NaN .* MMD NaN \(floor 0\)$/);
});

// ---- metrics that see blur: k-NN precision/recall, outside-the-support fraction, histogram TV ----

const checkerboard = toyDensity("checkerboard")!;
const eightGaussians = toyDensity("8gaussians")!;
const points = (...xy: number[]) => Float32Array.from(xy);
/** x plus N(0, std^2) noise on every coordinate. */
const blur = (x: Float32Array, std: number, seed: number) => {
  const rng = new Rng(seed);
  return x.map((v) => v + std * rng.normal());
};

test("k-NN radii: the k-th other point, duplicates counted; a grid's corners reach their diagonal", () => {
  // 10x10 unit grid: with k = 3 an edge or interior point has >= 3 neighbours at distance 1, a
  // corner only 2, its third is the diagonal at sqrt(2).
  const grid: number[] = [];
  for (let j = 0; j < 10; j++) for (let i = 0; i < 10; i++) grid.push(i, j);
  const r2 = knnRadiiSquared(Float32Array.from(grid), 3);
  for (let j = 0; j < 10; j++) {
    for (let i = 0; i < 10; i++) {
      const corner = (i === 0 || i === 9) && (j === 0 || j === 9);
      assert.equal(r2[j * 10 + i], corner ? 2 : 1, `point (${i}, ${j})`);
    }
  }
  // Three copies of a point: with k = 2 its two nearest others are the copies (0); with k = 3 the
  // far point (distance 5).
  const dup = points(0, 0, 0, 0, 0, 0, 3, 4);
  assert.deepEqual(Array.from(knnRadiiSquared(dup, 2)), [0, 0, 0, 25]);
  assert.deepEqual(Array.from(knnRadiiSquared(dup, 3)), [25, 25, 25, 25]);
  // Non-finite points get no radius and are nobody's neighbour.
  assert.deepEqual(Array.from(knnRadiiSquared(points(0, 0, NaN, 0, 1, 0, 3, 0), 1)), [1, NaN, 1, 4]);
  assert.throws(() => knnRadiiSquared(points(0, 0, 1, 1), 3), RangeError, "k = 3 needs 4 points");
  assert.throws(() => knnRadiiSquared(points(0, 0, 1, 1), 0), RangeError);
});

test("precision and recall match hand-counted answers on a line and a grid", () => {
  const line = (...xs: number[]) => Float32Array.from(xs.flatMap((x) => [x, 0]));
  const real = line(0, 1, 2, 3, 4, 5, 6, 7, 8, 9); // k = 1 radius 1 everywhere
  // Generated at 0, 0.5, 1 (radius 0.5 each): all three within 1 of a real point; real points 0
  // and 1 are within 0.5 of a generated one, the other eight are not.
  assert.deepEqual(precisionRecall(real, line(0, 0.5, 1), { k: 1 }), { precision: 1, recall: 0.2 });
  // Generated at 0.5, 2.5, ..., 20.5 (radius 2): 0.5..8.5 lie 0.5 from a real point, 10.5 is 1.5
  // from 9, beyond its radius 1, so precision 5/11; every real point is within 1.5 of one, recall 1.
  const spaced = line(...Array.from({ length: 11 }, (_, i) => 0.5 + 2 * i));
  assert.deepEqual(precisionRecall(real, spaced, { k: 1 }), { precision: 5 / 11, recall: 1 });

  // k = 3 on the 10x10 grid (radius 1, corners sqrt 2): (-0.8, -0.8) is inside only the corner's
  // wider ball; (10, 9) is exactly on the boundary of (9, 9)'s ball (boundary counts); (-1.2, 5)
  // and (10.01, 10.01) are outside every ball.
  const grid: number[] = [];
  for (let j = 0; j < 10; j++) for (let i = 0; i < 10; i++) grid.push(i, j);
  const generated = points(-0.8, -0.8, -0.8, 5, 4.5, 4.5, 10, 9, -1.2, 5, 10.01, 10.01);
  const { precision } = precisionRecall(Float32Array.from(grid), generated, { k: 3 });
  assert.equal(precision, 4 / 6);
});

test("precision = recall = 1 for the data itself at any k, 0 for a disjoint set; NaN samples are misses", () => {
  const x = sampleToy("checkerboard", 2000, new Rng(5));
  for (const k of [1, 3, 5, 10]) assert.deepEqual(precisionRecall(x, x, { k }), { precision: 1, recall: 1 }, `k = ${k}`);
  const far = x.map((v, i) => (i % 2 === 0 ? v + 100 : v));
  assert.deepEqual(precisionRecall(x, far), { precision: 0, recall: 0 });
  // A random half of the data: every generated point is a real point (precision 1), and its wider
  // balls still cover nearly all of the real set (recall measures coverage, not count).
  const half = precisionRecall(x, x.subarray(0, 2000));
  assert.equal(half.precision, 1);
  assert.ok(half.recall > 0.95, `recall of a random half ${half.recall}`);
  // Ten diverged samples: they count in the denominator, never inside a ball.
  const broken = x.slice();
  broken.fill(NaN, 0, 20);
  const pr = precisionRecall(x, broken);
  assert.equal(pr.precision, 1990 / 2000);
  assert.ok(pr.recall > 0.99 && pr.recall <= 1, `recall with 10 NaN samples ${pr.recall}`);
  assert.throws(() => precisionRecall(x, points(0, 0, 1, 1)), RangeError, "3 nearest neighbours need 4 points");
});

test("outside fraction on hand-placed points: checkerboard squares and 8gaussians 3-std discs", () => {
  // Square (floor(x/2), floor(y/2)) is filled when the sum is even; the board is [-4, 4)^2.
  const inside = points(1, 1, -1, -1, -3, -3, 3.9, -0.1, -4, -4);
  const outside = points(3, 1, -1, 1, 4.5, 0, 4, 0, 0, -4.01, NaN, 1, Infinity, 0);
  assert.equal(outsideFraction(inside, checkerboard), 0);
  assert.equal(outsideFraction(outside, checkerboard), 1);
  assert.equal(outsideFraction(new Float32Array([...inside, ...outside]), checkerboard), 7 / 12);
  // 8gaussians: centres on the circle of radius 4/sqrt2, std 0.5/sqrt2, support within 3 std.
  const c = 4 / Math.SQRT2;
  const s = 0.5 / Math.SQRT2;
  const g = points(
    c,
    0,
    c + 2.99 * s,
    0,
    0,
    -c + 2.99 * s,
    c / Math.SQRT2,
    c / Math.SQRT2,
    c + 3.01 * s,
    0,
    0,
    0,
    0,
    -c - 3.01 * s,
    NaN,
    NaN,
  );
  assert.equal(outsideFraction(g, eightGaussians), 4 / 8);
  // A fresh checkerboard set is entirely inside: its floor is exactly 0.
  assert.equal(outsideFraction(sampleToy("checkerboard", 20000, new Rng(6)), checkerboard), 0);
});

test("exact bin masses: checkerboard areas and 8gaussians normal integrals", () => {
  close(checkerboard.mass(0, 2, 0, 2), 1 / 8, 1e-15, "one filled square");
  close(checkerboard.mass(2, 4, 0, 2), 0, 1e-15, "an empty square");
  close(checkerboard.mass(-1, 1, -1, 1), 2 / 32, 1e-15, "two filled and two empty unit quarters");
  close(checkerboard.mass(-10, 10, -10, 10), 1, 1e-15, "the whole plane");
  const c = 4 / Math.SQRT2;
  const s = 0.5 / Math.SQRT2;
  // +-1 std box around one centre: (1/8) 0.682689492^2, the other modes are > 4 std away.
  close(eightGaussians.mass(c - s, c + s, -s, s), 0.682689492137 ** 2 / 8, 1e-7, "one mode's 1-std box");
  // Three modes right of the y axis, two on it: half the mass by symmetry.
  close(eightGaussians.mass(0, 100, -100, 100), 0.5, 1e-7, "half plane");
  close(eightGaussians.mass(-100, 100, -100, 100), 1, 1e-7, "the whole plane");
});

/** de Moivre's mean absolute deviation of a Binomial(n, p): 2 m C(n, m) p^m (1 - p)^(n - m + 1), m = floor(np) + 1. */
function binomialMeanAbsDeviation(n: number, p: number): number {
  const m = Math.floor(n * p) + 1;
  let logChoose = 0;
  for (let i = 1; i <= m; i++) logChoose += Math.log((n - m + i) / i);
  return 2 * m * Math.exp(logChoose + m * Math.log(p) + (n - m + 1) * Math.log(1 - p));
}

test("TV of exact checkerboard samples matches its expectation and shrinks with n", () => {
  // The 40x40 bins over [-4, 4]^2 align with the squares: 800 bins hold mass 1/800 each, the rest
  // none, so E[TV] = (1/2) 800 E|Binomial(n, 1/800) - n/800| / n exactly.
  const tvs: number[] = [];
  for (const n of [1000, 10000, 100000]) {
    const tv = histogramTV(sampleToy("checkerboard", n, new Rng(n)), checkerboard);
    const expected = (400 * binomialMeanAbsDeviation(n, 1 / 800)) / n;
    assert.ok(Math.abs(tv - expected) < 0.06 * expected, `n = ${n}: TV ${tv}, expected ${expected}`);
    tvs.push(tv);
  }
  assert.ok(tvs[0] > tvs[1] && tvs[1] > tvs[2] && tvs[2] < 0.04, `TV by n: ${tvs}`);
  // 8gaussians: bins straddle the modes and the plane beyond the box is a bin of its own; exact
  // samples still converge.
  const g = [1000, 100000].map((n) => histogramTV(sampleToy("8gaussians", n, new Rng(n)), eightGaussians));
  assert.ok(g[1] < g[0] / 5 && g[1] < 0.04, `8gaussians TV by n: ${g}`);
  // Points off the box and diverged points are compared against the exact (zero) mass there.
  close(histogramTV(points(10, 10, NaN, 0), checkerboard), 1, 1e-12, "all samples off the board");
  // Half the samples in one filled bin, half in an empty square: (|1/2 - 1/800| + 1/2 + 799/800) / 2.
  close(histogramTV(points(1, 1, 3, 1), checkerboard), 0.5 + 399 / 800, 1e-12, "two hand-placed points");
});

test("blur raises TV and the outside fraction above the floor, monotonically; precision drops; mode dropping drops recall", () => {
  const n = 10000;
  const real = sampleToy("checkerboard", n, new Rng(10));
  const exact = sampleToy("checkerboard", n, new Rng(11));
  const floor = { tv: histogramTV(exact, checkerboard), ...precisionRecall(real, exact) };
  assert.equal(outsideFraction(exact, checkerboard), 0);
  let previous = { tv: floor.tv, outside: 0, precision: floor.precision };
  for (const std of [0.1, 0.2]) {
    const blurred = blur(exact, std, 12);
    const tv = histogramTV(blurred, checkerboard);
    const outside = outsideFraction(blurred, checkerboard);
    const { precision, recall } = precisionRecall(real, blurred);
    // A point uniform in a 2x2 square leaves it along one axis with probability p1 = std/sqrt(2 pi)
    // (into a square of the other colour or off the board: outside); along both with p1^2, which
    // may land inside again. So 2 p1 (1 - p1) <= E[outside] <= 2 p1 (1 - p1) + p1^2.
    const p1 = std / Math.sqrt(2 * Math.PI);
    const sd = Math.sqrt(0.25 / n);
    assert.ok(
      outside > 2 * p1 * (1 - p1) - 4 * sd && outside < 2 * p1 * (1 - p1) + p1 * p1 + 4 * sd,
      `std ${std}: outside ${outside}, p1 ${p1}`,
    );
    assert.ok(tv > previous.tv + 0.03, `std ${std}: TV ${tv} vs ${previous.tv} (exact samples ${floor.tv})`);
    assert.ok(outside > previous.outside + 0.05, `std ${std}: outside ${outside} vs ${previous.outside}`);
    assert.ok(precision < previous.precision - 0.02, `std ${std}: precision ${precision} vs ${previous.precision}`);
    // Blur keeps every square covered: recall stays at the floor.
    assert.ok(Math.abs(recall - floor.recall) < 0.01, `std ${std}: recall ${recall} vs floor ${floor.recall}`);
    previous = { tv, outside, precision };
  }
  // Mode dropping: exact samples from the 4 squares left of the y axis only. Precision stays at the
  // floor, recall halves.
  const big = sampleToy("checkerboard", 3 * n, new Rng(13));
  const kept: number[] = [];
  for (let i = 0; i < 3 * n && kept.length < 2 * n; i++) if (big[2 * i] < 0) kept.push(big[2 * i], big[2 * i + 1]);
  const dropped = precisionRecall(real, Float32Array.from(kept));
  assert.ok(dropped.precision > floor.precision - 0.01, `half the squares: precision ${dropped.precision} vs floor ${floor.precision}`);
  assert.ok(Math.abs(dropped.recall - 0.5) < 0.03, `half the squares: recall ${dropped.recall}`);
  // The same picture on 8gaussians with its 3-std support: blur 0.2 widens each mode (std 0.354 -> 0.403).
  const g = sampleToy("8gaussians", n, new Rng(14));
  const gBlur = blur(g, 0.2, 15);
  const gFloor = { tv: histogramTV(g, eightGaussians), outside: outsideFraction(g, eightGaussians) };
  assert.ok(histogramTV(gBlur, eightGaussians) > 1.5 * gFloor.tv, `8gaussians TV ${histogramTV(gBlur, eightGaussians)} vs ${gFloor.tv}`);
  assert.ok(
    outsideFraction(gBlur, eightGaussians) > 2 * gFloor.outside,
    `8gaussians outside ${outsideFraction(gBlur, eightGaussians)} vs ${gFloor.outside}`,
  );
});

test("quality report: one call gives every metric with its floor, and the quality line shows them", () => {
  const fresh = (n: number, seed: number) => sampleToy("checkerboard", n, new Rng(seed));
  const blurred = blur(sampleToy("checkerboard", 3000, new Rng(77)), 0.2, 78);
  const r = qualityReport(blurred, fresh, 2, 3000, { density: checkerboard });
  const pr = r.precisionRecall!;
  const d = r.density!;
  // The floors are the metrics of the second fresh set against the first (and the exact density).
  const floor = precisionRecall(fresh(3000, 1001), fresh(3000, 2002));
  assert.equal(pr.k, 3);
  assert.deepEqual([pr.precisionFloor, pr.recallFloor], [floor.precision, floor.recall]);
  assert.equal(d.outsideFloor, 0);
  assert.equal(d.tvFloor, histogramTV(fresh(3000, 1001), checkerboard));
  assert.ok(d.outside > 0.1 && d.tv > d.tvFloor + 0.03 && pr.precision < pr.precisionFloor - 0.05, JSON.stringify(r));
  assert.match(d.histogram, /^40x40 bins over \[-4, 4\] x \[-4, 4\]/);
  assert.equal(d.support, "the 8 filled squares of the board");
  assert.equal(qualityReport(blurred, fresh, 2, 3000, { k: 5 }).precisionRecall?.k, 5);
  assert.equal(qualityReport(blurred, fresh, 2, 3000).density, undefined, "no density, no support metrics");
  assert.equal(
    qualityReport(Float32Array.of(0, 1, 2), (n) => new Float32Array(n), 1, 3).precisionRecall,
    undefined,
    "k-NN metrics are 2-D only",
  );
  const tiny = qualityReport(blurred.subarray(0, 6), fresh, 2, 3, { density: checkerboard });
  assert.ok(tiny.precisionRecall === undefined && tiny.density !== undefined, "3 points: no k = 3 balls, the density metrics still");

  const report: QualityReport = {
    sw2: 0.0832,
    sw2Floor: 0.0416,
    mmd: 0.00121,
    mmdFloor: -0.0000302,
    precisionRecall: { k: 3, precision: 0.9304, recall: 0.98, precisionFloor: 0.983, recallFloor: 0.9812 },
    density: { support: "s", histogram: "h", outside: 0.1112, outsideFloor: 0, tv: 0.2013, tvFloor: 0.0781 },
  };
  assert.equal(
    formatQuality(report),
    "outside 11.1% (floor 0.0%)  TV 0.201 (floor 0.0781)  precision (k=3) 0.930 (floor 0.983)  recall (k=3) 0.980 (floor 0.981)  sliced-W2 0.0832 (floor 0.0416)  MMD 0.00121 (floor -0.0000302)",
  );
  assert.match(
    formatQuality({ ...report, density: { ...report.density!, outside: 0.0025 } }),
    /^outside 0\.25% /,
    "a few stray samples do not read 0.0%",
  );
});
