// The seed project's pictures (issue 15 item 2): smooth density histograms, grids of panels, the
// sampling-evolution strip, and the likelihood figure whose Hutchinson panel converges to the exact one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { histogram2d, densityPlot, stacked, sideBySide, Raster, WHITE, viridis, valueRange } from "../../../src/viz/index.js";
import { decodePng, pngDimensions } from "../../../src/data/png.js";
import { LEFT, RIGHT } from "../../../src/viz/axes.js";
import { loadModel } from "../../../src/pipelines/model.js";
import { renderDensity2d } from "../../../src/pipelines/loglik.js";
import { runCli, tempDir } from "../../helpers/cli.js";

const FIXTURE_2D = join(import.meta.dirname, "..", "..", "fixtures", "ckpt-2d-v1");

test("histogram2d: shares per cell, top row first, outside points left out; the blur keeps interior mass", () => {
  // bounds [0, 4] x [0, 4], 4 bins: cell (row 0, col 0) is x in [0, 1), y in [3, 4].
  const pts = Float32Array.from([0.5, 3.5, 0.5, 3.2, 3.5, 0.5, 9, 9]);
  const h = histogram2d(pts, [0, 4, 0, 4], 4, 0);
  assert.equal(h[0], 0.5, "two of four points in the top-left cell");
  assert.equal(h[3 * 4 + 3], 0.25, "one in the bottom-right cell");
  assert.ok(Math.abs(h.reduce((a, b) => a + b, 0) - 0.75) < 1e-12, "the point outside is not counted");
  const centre = histogram2d(Float32Array.from([5.5, 5.5]), [0, 11, 0, 11], 11, 1.5);
  assert.ok(Math.abs(centre.reduce((a, b) => a + b, 0) - 1) < 1e-9, "blurring a point far from the edges keeps its mass");
  assert.ok(
    centre[5 * 11 + 5] < 0.2 && centre[5 * 11 + 5] > centre[5 * 11 + 6] && centre[5 * 11 + 6] === centre[4 * 11 + 5],
    "spread symmetrically, peak at the point",
  );
  const pic = densityPlot(pts, { bounds: [0, 4, 0, 4], bins: 4, size: 100 });
  assert.ok(pic.width > 100 && pic.height > 100);
});

test("stacked with sideBySide makes a grid of panels", () => {
  const a = new Raster(10, 20, WHITE);
  const b = new Raster(30, 5, WHITE);
  const g = stacked([sideBySide([a, b], 2), sideBySide([b, a], 2)], 3);
  assert.equal(g.width, 42);
  assert.equal(g.height, 20 + 3 + 20);
});

test("density.png: Hutchinson's panel approaches the exact one as probes grow", async () => {
  const dir = tempDir("fm-density-");
  try {
    const loaded = await loadModel(FIXTURE_2D, { kind: "2d" });
    const one = await renderDensity2d(loaded, dir, { gridN: 12, probes: 1, probe: "gaussian", seed: 3, solver: "rk4" });
    const many = await renderDensity2d(loaded, dir, { gridN: 12, probes: 64, probe: "gaussian", seed: 3, solver: "rk4" });
    console.log(`mean |log p exact - Hutchinson|: 1 probe ${one.meanAbsDiff.toFixed(4)}, 64 probes ${many.meanAbsDiff.toFixed(4)} nats`);
    assert.ok(one.meanAbsDiff > 0, "one probe is an estimate, not the exact divergence");
    assert.ok(many.meanAbsDiff < one.meanAbsDiff / 3, `64 probes (${many.meanAbsDiff}) should be much closer than 1 (${one.meanAbsDiff})`);
    const size = pngDimensions(readFileSync(one.file));
    assert.ok(size && size.width > 2.5 * size.height, `exact, Hutchinson and samples side by side: ${size?.width}x${size?.height}`);
    // One colour scale for both maps: the top colour marks the largest density of the two, so only the
    // map holding it reaches that colour (with a scale each, both maps reach it).
    const png = decodePng(readFileSync(many.file));
    const panel = LEFT + 320 + RIGHT + 8;
    const top = viridis(1);
    const topPixels = [0, 1].map((k) => {
      let n = 0;
      for (let y = 0; y < png.height; y++)
        for (let x = k * panel; x < (k + 1) * panel; x++) {
          const i = 4 * (y * png.width + x);
          if (png.data[i] === top[0] && png.data[i + 1] === top[1] && png.data[i + 2] === top[2]) n++;
        }
      return n;
    });
    assert.ok(Math.max(...topPixels) > 0 && Math.min(...topPixels) === 0, `top-colour pixels per map: ${topPixels}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("sample2d writes evolution.png: ten panels of the samples from noise to data", () => {
  const dir = tempDir("fm-evolution-");
  try {
    const r = runCli(["sample2d", "--ckpt", FIXTURE_2D, "--n", "200", "--nfe", "8", "--frames", "3", "--out", dir]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /wrote .*evolution\.png/);
    const size = pngDimensions(readFileSync(join(dir, "evolution.png")));
    // Ten 150-px scatter panels (36 px of tick labels left, 12 right), whatever --frames is.
    assert.deepEqual(size?.width, 10 * (36 + 150 + 12));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("valueRange: min and max of the finite values over all arrays; one value or none still gives a usable scale", () => {
  assert.deepEqual(valueRange(Float64Array.of(1, Number.NaN, 3), Float32Array.of(-2, Number.POSITIVE_INFINITY)), [-2, 3]);
  assert.deepEqual(valueRange(Float64Array.of(5, 5)), [5, 6]);
  assert.deepEqual(valueRange(Float64Array.of(Number.NaN)), [0, 1]);
});
