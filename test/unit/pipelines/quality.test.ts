// Issue 2's quality bar: training checkerboard with the defaults reaches a sliced-W2 within 2x of
// the noise floor. The full default run (TRAIN2D_DEFAULTS.steps, minutes) runs with FLOWMATCH_FULL_TESTS=1;
// CI runs a short smoke version with the same model and a looser bar.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultWarmup, trainToy2d, TRAIN2D_DEFAULTS } from "../../../src/pipelines/toy2d.js";
import { sampleToy2d, evaluateToy2d } from "../../../src/pipelines/toy2dSampling.js";
import { loadModel } from "../../../src/pipelines/model.js";
import { DEFAULT_MLP } from "../../../src/core/models/mlp.js";

const FULL = process.env.FLOWMATCH_FULL_TESTS === "1";

async function trainAndMeasure(steps: number) {
  const dir = mkdtempSync(join(tmpdir(), "fm-quality-"));
  try {
    await trainToy2d({
      dataset: "checkerboard",
      steps,
      batchSize: TRAIN2D_DEFAULTS.batchSize,
      lr: TRAIN2D_DEFAULTS.lr,
      lrSchedule: TRAIN2D_DEFAULTS.lrSchedule,
      warmup: defaultWarmup(steps),
      seed: 0,
      path: "straight",
      timeSampler: TRAIN2D_DEFAULTS.timeSampler,
      emaDecay: TRAIN2D_DEFAULTS.emaDecay,
      coupling: "independent",
      model: DEFAULT_MLP,
      out: dir,
      checkpointEvery: 100000,
      resume: false,
    });
    const loaded = await loadModel(dir, { kind: "2d" });
    const { x } = await sampleToy2d(loaded, { n: 4000, solver: "rk4", nfe: 100, seed: 12345, weights: "ema" });
    return await evaluateToy2d("checkerboard", x);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("checkerboard smoke: a short default-model run gets within 3x of the noise floor", async () => {
  const q = await trainAndMeasure(1500);
  console.log(
    `smoke (1500 steps): sliced-W2 ${q.sw2.toFixed(4)}, noise floor ${q.sw2Floor.toFixed(4)} (${(q.sw2 / q.sw2Floor).toFixed(2)}x)`,
  );
  assert.ok(q.sw2 < 3 * q.sw2Floor, `sliced-W2 ${q.sw2} vs floor ${q.sw2Floor}`);
});

test("checkerboard with the defaults is within 2x of the noise floor, and sharper than the old defaults' 11% outside", {
  skip: FULL ? false : "set FLOWMATCH_FULL_TESTS=1 to run the full default training (~3 min on a quiet machine)",
}, async () => {
  const q = await trainAndMeasure(TRAIN2D_DEFAULTS.steps);
  const outside = q.density?.outside ?? NaN;
  console.log(
    `full (${TRAIN2D_DEFAULTS.steps} steps): sliced-W2 ${q.sw2.toFixed(4)}, noise floor ${q.sw2Floor.toFixed(4)} (${(q.sw2 / q.sw2Floor).toFixed(2)}x), outside ${(100 * outside).toFixed(1)}%`,
  );
  assert.ok(q.sw2 < 2 * q.sw2Floor, `sliced-W2 ${q.sw2} vs floor ${q.sw2Floor}`);
  // Measured 2.7% at n = 4,000 (README, "How the defaults were chosen"); the 60,000-step batch-256
  // defaults before them gave 3.8%, those before Fourier features 6.3%, the old ones 11.5%.
  assert.ok(outside < 0.05, `outside ${outside}`);
});
