// The seed project's pictures (issue 15 item 2): smooth density histograms, grids of panels, the
// sampling-evolution strip, and the likelihood figure whose Hutchinson panel converges to the exact one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { histogram2d, densityPlot, stacked, sideBySide, Raster, WHITE, heatmap, viridis, valueRange } from "../../../src/viz/index.js";
import { decodePng, pngDimensions } from "../../../src/data/png.js";
import { LEFT, RIGHT, TITLE_BAND } from "../../../src/viz/axes.js";
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
    // The colour scale is topped at the exact map's 99th percentile: the top colour covers the 2 of its
    // 144 cells at or above it, and the map is not left dark by a few high cells.
    const png = decodePng(readFileSync(many.file));
    const panel = LEFT + 320 + RIGHT + 8;
    const colourShare = (k: number, u: (c: [number, number, number, number]) => boolean) => {
      let n = 0;
      for (let y = TITLE_BAND; y < TITLE_BAND + 320; y++)
        for (let x = k * panel + LEFT; x < k * panel + LEFT + 320; x++) {
          const i = 4 * (y * png.width + x);
          if (u([png.data[i], png.data[i + 1], png.data[i + 2], 255])) n++;
        }
      return n / (320 * 320);
    };
    const isColour = (c: readonly number[]) => (p: readonly number[]) => p[0] === c[0] && p[1] === c[1] && p[2] === c[2];
    const topShare = colourShare(0, isColour(viridis(1)));
    assert.ok(topShare > 0.5 / 144 && topShare < 3 / 144, `share of the exact map at the top colour: ${topShare}`);
    const darkShare = colourShare(0, (p) => p[2] < 100 && p[1] < 80);
    assert.ok(darkShare < 0.9, `share of the exact map in the darkest colours: ${darkShare}`);
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

test("valueRange: min and max of the finite values over all arrays, or min and a quantile; degenerate input still gives a usable scale", () => {
  assert.deepEqual(valueRange([Float64Array.of(1, Number.NaN, 3), Float32Array.of(-2, Number.POSITIVE_INFINITY)]), [-2, 3]);
  assert.deepEqual(valueRange([Float64Array.of(5, 5)]), [5, 6]);
  assert.deepEqual(valueRange([Float64Array.of(Number.NaN)]), [0, 1]);
  // 1..100 and one spike: the 99th percentile of the 101 values is 100, not the spike.
  const spiky = Float64Array.from({ length: 101 }, (_, i) => (i === 50 ? 1e4 : i < 50 ? i + 1 : i));
  assert.deepEqual(valueRange([spiky]), [1, 1e4]);
  assert.deepEqual(valueRange([spiky], { upperQuantile: 0.99 }), [1, 100]);
  assert.deepEqual(valueRange([spiky.subarray(0, 50), spiky.subarray(50)], { upperQuantile: 0.5 }), [1, 51]);
  assert.throws(() => valueRange([spiky], { upperQuantile: 0 }), /upperQuantile must be in \(0, 1\]/);
});

test("heatmap with a quantile-topped scale: one spike saturates instead of darkening the map", () => {
  const values = Float64Array.from({ length: 100 }, (_, i) => i / 100);
  values[37] = 1e3;
  const bottom = viridis(0);
  const bottomShare = (range?: [number, number]) => {
    const r = heatmap(values, 10, { size: 100, range });
    let n = 0;
    for (let y = TITLE_BAND; y < TITLE_BAND + 100; y++)
      for (let x = LEFT; x < LEFT + 100; x++) {
        const p = r.getPixel(x, y);
        if (p[0] === bottom[0] && p[1] === bottom[1] && p[2] === bottom[2]) n++;
      }
    return n / 100 ** 2;
  };
  assert.ok(bottomShare() > 0.9, "on a [min, max] scale the spike leaves nearly every cell at the bottom colour");
  assert.ok(bottomShare(valueRange([values], { upperQuantile: 0.98 })) <= 0.02, "topped at a quantile, only the smallest cell is");
});
