import { test } from "node:test";
import assert from "node:assert/strict";
import { TOY_DATASETS, parseToyDataset, sampleToy, toyBounds } from "../src/data/toy2d.js";
import { Rng } from "../src/core/rng.js";
import { UserError } from "../src/core/errors.js";

test("every toy dataset is seeded, finite and inside its plot bounds", () => {
  for (const name of TOY_DATASETS) {
    const a = sampleToy(name, 2000, new Rng(1));
    const b = sampleToy(name, 2000, new Rng(1));
    const c = sampleToy(name, 2000, new Rng(2));
    assert.deepEqual(a, b, `${name} is deterministic for a seed`);
    assert.notDeepEqual(a, c, `${name} differs across seeds`);
    const [x0, x1, y0, y1] = toyBounds(name);
    let inside = 0;
    for (let i = 0; i < 2000; i++) {
      assert.ok(Number.isFinite(a[2 * i]) && Number.isFinite(a[2 * i + 1]));
      if (a[2 * i] > x0 && a[2 * i] < x1 && a[2 * i + 1] > y0 && a[2 * i + 1] < y1) inside++;
    }
    assert.ok(inside / 2000 > 0.99, `${name}: ${inside} of 2000 inside the bounds`);
  }
});

test("checkerboard points lie only in the filled squares", () => {
  const x = sampleToy("checkerboard", 5000, new Rng(3));
  const counts = new Map<string, number>();
  for (let i = 0; i < 5000; i++) {
    const cx = Math.floor(x[2 * i] / 2);
    const cy = Math.floor(x[2 * i + 1] / 2);
    assert.ok(cx >= -2 && cx < 2 && cy >= -2 && cy < 2, "inside [-4, 4]^2");
    assert.equal((((cx + cy) % 2) + 2) % 2, 0, `point ${x[2 * i]}, ${x[2 * i + 1]} is in an empty square`);
    counts.set(`${cx},${cy}`, (counts.get(`${cx},${cy}`) ?? 0) + 1);
  }
  assert.equal(counts.size, 8, "all eight filled squares are used");
  for (const c of counts.values()) assert.ok(c > 5000 / 8 - 150 && c < 5000 / 8 + 150, "roughly uniform over squares");
});

test("circles have two radii, 8gaussians eight modes, moons two halves", () => {
  const c = sampleToy("circles", 4000, new Rng(4));
  let inner = 0;
  for (let i = 0; i < 4000; i++) {
    const r = Math.hypot(c[2 * i], c[2 * i + 1]);
    assert.ok(Math.abs(r - 2.5) < 0.6 || Math.abs(r - 1.25) < 0.6, `radius ${r}`);
    if (r < 1.9) inner++;
  }
  assert.ok(Math.abs(inner - 2000) < 100);
  const g = sampleToy("8gaussians", 4000, new Rng(5));
  const modes = new Set<number>();
  for (let i = 0; i < 4000; i++) modes.add(((Math.round(Math.atan2(g[2 * i + 1], g[2 * i]) / (Math.PI / 4)) % 8) + 8) % 8);
  assert.equal(modes.size, 8);
  const m = sampleToy("moons", 4000, new Rng(6));
  let meanUpper = 0;
  let meanLower = 0;
  for (let i = 0; i < 4000; i++) (i % 2 === 0 ? (meanUpper += m[2 * i + 1]) : (meanLower += m[2 * i + 1]));
  assert.ok(meanUpper / 2000 > 0.3 && meanLower / 2000 < -0.3, "upper moon above, lower moon below");
});

test("an unknown dataset lists the valid names and suggests the closest", () => {
  assert.throws(
    () => parseToyDataset("checkerbord"),
    (e: unknown) => e instanceof UserError && /did you mean "checkerboard"/.test(e.message) && /moons, 8gaussians, circles, spirals, swissroll/.test(e.message),
  );
  assert.throws(() => parseToyDataset("mnist2d"), (e: unknown) => e instanceof UserError && !/did you mean/.test(e.message));
});
