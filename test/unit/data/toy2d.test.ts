import { test } from "node:test";
import assert from "node:assert/strict";
import { TOY_DATASETS, parseToyDataset, sampleToy, toyBounds, type ToyDatasetName } from "../../../src/data/toy2d.js";
import { mmdRbf } from "../../../src/core/metrics.js";
import { Rng } from "../../../src/core/rng.js";
import { UserError } from "../../../src/core/errors.js";

/** Angle difference wrapped to (-pi, pi]. */
const wrap = (a: number) => a - 2 * Math.PI * Math.round(a / (2 * Math.PI));

test("every toy dataset is seeded, finite, inside its plot bounds and of the documented scale", () => {
  for (const name of TOY_DATASETS) {
    const n = 4000;
    const a = sampleToy(name, n, new Rng(1));
    assert.equal(a.length, 2 * n);
    assert.deepEqual(a, sampleToy(name, n, new Rng(1)), `${name} is deterministic for a seed`);
    assert.notDeepEqual(a, sampleToy(name, n, new Rng(2)), `${name} differs across seeds`);
    const [x0, x1, y0, y1] = toyBounds(name);
    let inside = 0;
    const mean = [0, 0];
    const sq = [0, 0];
    for (let i = 0; i < n; i++) {
      const x = a[2 * i];
      const y = a[2 * i + 1];
      assert.ok(Number.isFinite(x) && Number.isFinite(y), `${name}: point ${i} is finite`);
      if (x > x0 && x < x1 && y > y0 && y < y1) inside++;
      mean[0] += x / n;
      mean[1] += y / n;
      sq[0] += (x * x) / n;
      sq[1] += (y * y) / n;
    }
    assert.ok(inside / n > 0.999, `${name}: ${inside} of ${n} inside the bounds`);
    for (const d of [0, 1]) {
      const std = Math.sqrt(sq[d] - mean[d] ** 2);
      assert.ok(Math.abs(mean[d]) < 0.5, `${name}: mean ${mean[d]} near the origin`);
      assert.ok(std > 0.9 && std < 2.5, `${name}: per-axis std ${std} in the documented 1-2 range`);
    }
  }
  assert.deepEqual(sampleToy("moons", 0, new Rng(1)), new Float32Array(0));
  assert.throws(() => sampleToy("moons", 2.5, new Rng(1)), UserError);
  assert.throws(() => sampleToy("moons", -1, new Rng(1)), UserError);
});

test("checkerboard points lie only in the filled squares, evenly", () => {
  const n = 8000;
  const x = sampleToy("checkerboard", n, new Rng(3));
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const cx = Math.floor(x[2 * i] / 2);
    const cy = Math.floor(x[2 * i + 1] / 2);
    assert.ok(cx >= -2 && cx < 2 && cy >= -2 && cy < 2, "inside [-4, 4]^2");
    assert.equal((((cx + cy) % 2) + 2) % 2, 0, `point ${x[2 * i]}, ${x[2 * i + 1]} is in an empty square`);
    counts.set(`${cx},${cy}`, (counts.get(`${cx},${cy}`) ?? 0) + 1);
  }
  assert.equal(counts.size, 8, "all eight filled squares are used");
  // Binomial(8000, 1/8): sd 30, so +-150 is 5 sd.
  for (const c of counts.values()) assert.ok(Math.abs(c - n / 8) < 150, `square count ${c} roughly uniform`);
});

test("circles have radii 2.5 and 1.25 in equal shares", () => {
  const n = 4000;
  const c = sampleToy("circles", n, new Rng(4));
  let inner = 0;
  for (let i = 0; i < n; i++) {
    const r = Math.hypot(c[2 * i], c[2 * i + 1]);
    const expected = i % 2 === 0 ? 2.5 : 1.25;
    // Noise 0.05 * 2.5 = 0.125 per axis: 0.6 is almost 5 sd.
    assert.ok(Math.abs(r - expected) < 0.6, `row ${i}: radius ${r}, expected ${expected}`);
    if (r < 1.875) inner++;
  }
  assert.equal(inner, n / 2);
});

test("8gaussians has eight equal modes at radius 2*sqrt(2) with std 0.5/sqrt(2)", () => {
  const n = 16000;
  const g = sampleToy("8gaussians", n, new Rng(5));
  const centre = (k: number) => [2 * Math.SQRT2 * Math.cos((k * Math.PI) / 4), 2 * Math.SQRT2 * Math.sin((k * Math.PI) / 4)];
  const counts = new Array<number>(8).fill(0);
  let residualSq = 0;
  for (let i = 0; i < n; i++) {
    const k = ((Math.round(Math.atan2(g[2 * i + 1], g[2 * i]) / (Math.PI / 4)) % 8) + 8) % 8;
    counts[k]++;
    const [cx, cy] = centre(k);
    residualSq += (g[2 * i] - cx) ** 2 + (g[2 * i + 1] - cy) ** 2;
  }
  for (const c of counts) assert.ok(Math.abs(c - n / 8) < 5 * Math.sqrt((n * 7) / 64), `mode count ${c}`);
  const std = Math.sqrt(residualSq / (2 * n));
  assert.ok(Math.abs(std - 0.5 / Math.SQRT2) < 0.01, `per-axis std around the nearest centre ${std}`);
});

test("moons: even rows on the upper arc, odd rows on the lower, radius 2 around their centres", () => {
  const n = 4000;
  const m = sampleToy("moons", n, new Rng(6));
  let meanUpperY = 0;
  let meanLowerY = 0;
  let far = 0;
  for (let i = 0; i < n; i++) {
    const x = m[2 * i];
    const y = m[2 * i + 1];
    const upper = i % 2 === 0;
    // sklearn's arcs centred at (0,0) and (1,0.5), shifted by (-0.5,-0.25) and scaled by 2.
    const [cx, cy] = upper ? [-1, -0.5] : [1, 0.5];
    if (Math.abs(Math.hypot(x - cx, y - cy) - 2) > 0.6) far++;
    if (upper) {
      meanUpperY += y / (n / 2);
      assert.ok(y > cy - 0.8, `upper-moon point below its centre: ${x}, ${y}`);
    } else {
      meanLowerY += y / (n / 2);
      assert.ok(y < cy + 0.8, `lower-moon point above its centre: ${x}, ${y}`);
    }
  }
  assert.ok(far < n * 0.005, `${far} points off their arc`);
  assert.ok(meanUpperY > 0.3 && meanLowerY < -0.3, `upper moon mean y ${meanUpperY}, lower ${meanLowerY}`);
});

test("spirals and swissroll follow their curves: angle tracks radius", () => {
  const n = 4000;
  // 2spirals: one arm is (-cos s, sin s) s / 3, angle pi - s at radius s / 3; the other is its
  // reflection, at angle -s. The uniform jitter U(0, 0.5) / 3 per axis has mean 1/12: take it off.
  const s = sampleToy("spirals", n, new Rng(7));
  let checked = 0;
  let onCurve = 0;
  let nearerOwnArm = 0;
  for (let i = 0; i < n; i++) {
    const sign = i % 2 === 0 ? 1 : -1;
    const x = s[2 * i] - sign / 12;
    const y = s[2 * i + 1] - sign / 12;
    const r = Math.hypot(x, y);
    if (r < 1) continue; // near the centre the jitter dominates the angle
    const expected = sign > 0 ? Math.PI - 3 * r : -3 * r;
    const error = Math.abs(wrap(Math.atan2(y, x) - expected));
    checked++;
    if (error < 0.6) onCurve++;
    if (error < Math.PI / 2) nearerOwnArm++; // the other arm lies at angle error pi
  }
  assert.ok(checked > n / 2, `${checked} spiral points beyond radius 1`);
  assert.ok(onCurve / checked > 0.9, `spirals: ${onCurve} of ${checked} within 0.6 rad of their arm`);
  assert.ok(nearerOwnArm / checked > 0.99, `spirals: ${nearerOwnArm} of ${checked} nearer their own arm than the other`);
  // Swiss roll: the curve (t cos t, t sin t) / 5, t in [1.5 pi, 4.5 pi], plus N(0, 0.2^2) per axis,
  // so 95% of points lie within 0.4 of it (vs ~60% for points spread over the roll's turns).
  const w = sampleToy("swissroll", n, new Rng(8));
  const curve = Array.from({ length: 3000 }, (_, k) => {
    const t = 1.5 * Math.PI * (1 + (2 * k) / 2999);
    return [(t * Math.cos(t)) / 5, (t * Math.sin(t)) / 5];
  });
  onCurve = 0;
  for (let i = 0; i < n; i++) {
    let nearest = Infinity;
    for (const [cx, cy] of curve) nearest = Math.min(nearest, Math.hypot(w[2 * i] - cx, w[2 * i + 1] - cy));
    if (nearest < 0.4) onCurve++;
  }
  assert.ok(onCurve / n > 0.92, `swissroll: ${onCurve} of ${n} within 0.4 of the roll`);
});

test("an unknown dataset lists the valid names and suggests the closest", () => {
  const rejects = (name: string, suggestion: ToyDatasetName | null) =>
    assert.throws(
      () => parseToyDataset(name),
      (e: unknown) =>
        e instanceof UserError &&
        e.message.includes(`"${name}"`) &&
        e.message.includes(TOY_DATASETS.join(", ")) &&
        (suggestion === null ? !/did you mean/.test(e.message) : e.message.includes(`did you mean "${suggestion}"`)),
      `${name} -> ${suggestion}`,
    );
  rejects("checkerbord", "checkerboard");
  rejects("2spirals", "spirals");
  rejects("moon", "moons");
  rejects("8gaussian", "8gaussians");
  rejects("mnist2d", null);
  rejects("", null);
  for (const name of TOY_DATASETS) assert.equal(parseToyDataset(name), name);
  assert.equal(parseToyDataset(" Moons "), "moons", "case and spaces are forgiven");
});

test("subsampling in the metrics keeps interleaved classes: moons vs moons has MMD near zero", () => {
  // Moons put one arc on even rows; a stride-2 subsample of 4000 rows would keep only one arc.
  const big = sampleToy("moons", 4000, new Rng(9));
  const small = sampleToy("moons", 2000, new Rng(10));
  const mmd = mmdRbf(big, small, 2, { maxSamples: 2000 });
  assert.ok(Math.abs(mmd) < 0.01, `MMD ${mmd}`);
});
