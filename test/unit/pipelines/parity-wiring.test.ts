// Issue 15 wiring: sample2d --time-grid (the solver's steps where the grid puts them) and
// train-image --coupling ot (noise paired with images by exact OT within each label).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Rng } from "../../../src/core/rng.js";
import { odeint } from "../../../src/core/solvers.js";
import { modelField } from "../../../src/core/field.js";
import { mlpModel } from "../../../src/core/models/mlp.js";
import { getTimeSampler } from "../../../src/core/timeSamplers.js";
import { imageBatches } from "../../../src/pipelines/imageBatches.js";
import { trainImage, type ImageTrainOptions } from "../../../src/pipelines/images.js";
import { loadModel } from "../../../src/pipelines/model.js";
import { sampleToy2d } from "../../../src/pipelines/toy2dSampling.js";
import type { ImageDataset } from "../../../src/data/images.js";
import { runCli, tempDir } from "../../helpers/cli.js";

const FIXTURE_2D = join(import.meta.dirname, "..", "..", "fixtures", "ckpt-2d-v1");

function tinyImages(n: number, classes: number): ImageDataset {
  const rng = new Rng(4);
  const per = 4 * 4;
  const images = new Float32Array(n * per);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % classes;
    for (let j = 0; j < per; j++) images[i * per + j] = (j % classes === labels[i] ? 0.8 : -0.8) + 0.3 * rng.normal();
  }
  return {
    name: "tiny",
    images,
    labels,
    n,
    height: 4,
    width: 4,
    channels: 1,
    numClasses: classes,
    classNames: Array.from({ length: classes }, (_, k) => String(k)),
  };
}

function sqdist(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  let s = 0;
  for (let d = 0; d < dim; d++) s += (a[i * dim + d] - b[j * dim + d]) ** 2;
  return s;
}

function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  return permutations(n - 1).flatMap((p) => Array.from({ length: n }, (_, k) => [...p.slice(0, k), n - 1, ...p.slice(k)]));
}

test("train-image --coupling ot: the batch's noise, re-paired by exact OT within each label", () => {
  const data = tinyImages(48, 3);
  const dim = 16;
  const opts = { batchSize: 12, seed: 2, labelDropout: 0.25, sampleTimes: getTimeSampler("uniform") };
  const plain = imageBatches(data, opts);
  const ot = imageBatches(data, { ...opts, coupling: "ot" });
  for (const k of [0, 3]) {
    const a = plain(k);
    const x0Plain = a.x0.slice();
    const b = ot(k);
    assert.deepEqual(b.labels, a.labels, "same images and labels");
    assert.deepEqual(b.t, a.t, "same times");
    const rows = (x: Float32Array) => Array.from({ length: 12 }, (_, i) => Array.from(x.subarray(i * dim, (i + 1) * dim)).join(",")).sort();
    assert.deepEqual(rows(b.x0), rows(x0Plain), "the same noise rows, only re-paired");
    // Each label's pairing is the cheapest of all its permutations (brute force), and no better one mixes labels in.
    const groups = new Map<number, number[]>();
    b.labels.forEach((l, i) => groups.set(l, [...(groups.get(l) ?? []), i]));
    assert.ok(groups.size >= 3, "labels of several classes (and the null label) in the batch");
    for (const [label, idx] of groups) {
      const cost = (perm: number[]) => perm.reduce((s, p, q) => s + sqdist(b.x0, idx[p], b.x1, idx[q], dim), 0);
      const got = cost(idx.map((_, q) => q));
      const best = Math.min(...permutations(idx.length).map(cost));
      assert.ok(Math.abs(got - best) < 1e-3, `label ${label}: pairing cost ${got} vs optimum ${best}`);
    }
  }
});

test("train-image --coupling ot is recorded and a resume must keep it", async () => {
  const dir = tempDir("fm-image-ot-");
  try {
    const base: ImageTrainOptions = {
      dataset: "tiny",
      data: tinyImages(64, 2),
      steps: 3,
      batchSize: 8,
      lr: 1e-3,
      seed: 0,
      path: "straight",
      timeSampler: "uniform",
      emaDecay: 0.9,
      labelDropout: 0.1,
      limit: 0,
      model: { channels: [4, 8], timeEmbDim: 8, groups: 4 },
      out: dir,
      checkpointEvery: 10,
      resume: false,
      coupling: "ot",
      backend: "jax",
    };
    await trainImage(base);
    const m = await loadModel(dir, { kind: "image" });
    assert.equal(m.config.train.coupling, "ot");
    await assert.rejects(trainImage({ ...base, steps: 5, resume: true, coupling: "independent" }), /--coupling/);
    const resumed = await trainImage({ ...base, steps: 5, resume: true });
    assert.equal(resumed.step, 5);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("sample2d --time-grid: the solve uses the grid (same evaluations, other samples), recorded in metrics.json; bad pairings refused", async () => {
  const loaded = await loadModel(FIXTURE_2D, { kind: "2d" });
  const shifted = await sampleToy2d(loaded, { n: 50, solver: "euler", nfe: 4, seed: 1, weights: "ema", timeGrid: "shifted", shift: 3 });
  const uniform = await sampleToy2d(loaded, { n: 50, solver: "euler", nfe: 4, seed: 1, weights: "ema" });
  const f = modelField(mlpModel(loaded.config.model), loaded.ema, { sampleShape: [2] });
  const direct = await odeint(f.field, new Rng(1).normals(100), { solver: "euler", nfe: 4, timeGrid: "shifted", shift: 3 });
  f.dispose();
  assert.deepEqual(shifted.x, direct.x);
  assert.equal(shifted.nfe, 4);
  assert.notDeepEqual(shifted.x, uniform.x);

  const dir = tempDir("fm-grid-");
  try {
    const r = runCli([
      "sample2d",
      "--ckpt",
      FIXTURE_2D,
      "--solver",
      "euler",
      "--nfe",
      "4",
      "--time-grid",
      "shifted",
      "--shift",
      "2",
      "--n",
      "100",
      "--frames",
      "2",
      "--out",
      dir,
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /quality \(euler, NFE 4, shifted grid \(shift 2\), n=100\)/);
    const metrics = JSON.parse(readFileSync(join(dir, "metrics.json"), "utf8")) as Record<string, unknown>;
    assert.equal(metrics.timeGrid, "shifted");
    assert.equal(metrics.shift, 2);
    assert.equal(metrics.nfe, 4);
    const dopri = runCli(["sample2d", "--ckpt", FIXTURE_2D, "--solver", "dopri5", "--time-grid", "edm", "--out", dir]);
    assert.equal(dopri.code, 1);
    assert.match(dopri.err, /dopri5 chooses its own steps/);
    const shiftAlone = runCli(["sample2d", "--ckpt", FIXTURE_2D, "--shift", "2", "--out", dir]);
    assert.equal(shiftAlone.code, 1);
    assert.match(shiftAlone.err, /--shift applies to --time-grid shifted only/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
