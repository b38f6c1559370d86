// The image pipeline on a tiny synthetic dataset (8x8 bars of 4 classes) and a tiny UNet:
// the loss falls, checkpoints round-trip bit-exactly, a resumed run continues the same loss curve,
// guidance w = 0 is the unconditional field, and ONNX sampling agrees with the engine.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Rng } from "../../../src/core/rng.js";
import { modelField } from "../../../src/core/field.js";
import { loadCheckpoint } from "../../../src/io/checkpoint.js";
import { trainImage, type ImageTrainOptions } from "../../../src/pipelines/images.js";
import { sampleImages } from "../../../src/pipelines/imageSampling.js";
import { loadModel } from "../../../src/pipelines/model.js";
import { unetModel } from "../../../src/core/models/unet.js";
import type { ImageDataset } from "../../../src/data/images.js";

/** Class k: a bright horizontal bar at row 2k (+ noise); values in [-1, 1]. */
function barsDataset(n: number): ImageDataset {
  const rng = new Rng(3);
  const H = 8;
  const W = 8;
  const images = new Float32Array(n * H * W);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = i % 4;
    labels[i] = k;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) images[i * H * W + y * W + x] = (y === 2 * k || y === 2 * k + 1 ? 0.9 : -0.9) + 0.05 * rng.normal();
  }
  return { name: "bars", images, labels, n, height: H, width: W, channels: 1, numClasses: 4, classNames: ["0", "1", "2", "3"] };
}

const data = barsDataset(256);
const base = (out: string, steps: number): ImageTrainOptions => ({
  dataset: "bars",
  data,
  steps,
  batchSize: 16,
  lr: 2e-3,
  seed: 0,
  path: "straight",
  timeSampler: "uniform",
  emaDecay: 0.99,
  labelDropout: 0.2,
  limit: 0,
  model: { channels: [8, 16], timeEmbDim: 16, groups: 4 },
  out,
  checkpointEvery: 10,
  resume: false,
});

test("image training: loss falls, checkpoints round-trip, resume continues the same curve", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-img-"));
  try {
    const full = await trainImage(base(join(dir, "full"), 80));
    const head = full.losses.slice(0, 10).reduce((a, b) => a + b) / 10;
    const tail = full.losses.slice(-10).reduce((a, b) => a + b) / 10;
    console.log(`image loss: first 10 steps ${head.toFixed(4)}, last 10 ${tail.toFixed(4)}`);
    assert.ok(tail < 0.8 * head, `loss fell from ${head} to ${tail}`);

    // Interrupted at 40 (a checkpoint at 40 exists), then resumed to 80: same losses.
    const part = await trainImage(base(join(dir, "part"), 40));
    const resumed = await trainImage({ ...base(join(dir, "part"), 80), resume: true });
    assert.equal(resumed.losses.length, 80);
    for (let i = 0; i < 80; i++)
      assert.ok(
        Math.abs(resumed.losses[i] - full.losses[i]) <= 1e-6 * Math.abs(full.losses[i]),
        `step ${i + 1}: ${resumed.losses[i]} vs ${full.losses[i]}`,
      );
    assert.deepEqual(part.losses, full.losses.slice(0, 40));

    // Bit-exact checkpoint round trip: the resumed run's final weights equal the uninterrupted run's.
    const a = await loadCheckpoint(join(dir, "full"));
    const b = await loadCheckpoint(join(dir, "part"));
    for (const [name, t] of Object.entries(a.tensors)) assert.deepEqual(b.tensors[name].data, t.data, name);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("guidance w = 0 equals the unconditional field; ONNX sampling agrees with the engine", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-img-"));
  try {
    await trainImage(base(dir, 30));
    const loaded = await loadModel(dir, { kind: "image" });
    const cfg = loaded.config.model;
    const n = 4;
    const x = new Rng(9).normals(n * 64);
    const labels = Int32Array.from([0, 1, 2, 3]);
    const guided = modelField(unetModel(cfg), loaded.ema, { sampleShape: [8, 8, 1], labels, guidance: 0, nullLabel: cfg.numClasses });
    const uncond = modelField(unetModel(cfg), loaded.ema, { sampleShape: [8, 8, 1], labels: new Int32Array(n).fill(cfg.numClasses) });
    const cond = modelField(unetModel(cfg), loaded.ema, { sampleShape: [8, 8, 1], labels });
    const vg = await guided.field(x, 0.4);
    const vu = await uncond.field(x, 0.4);
    const vc = await cond.field(x, 0.4);
    let maxDiff = 0;
    let condDiff = 0;
    for (let i = 0; i < vg.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(vg[i] - vu[i]));
      condDiff = Math.max(condDiff, Math.abs(vc[i] - vu[i]));
    }
    for (const f of [guided, uncond, cond]) f.dispose();
    assert.ok(maxDiff < 1e-5, `w=0 differs from unconditional by ${maxDiff}`);
    assert.ok(condDiff > 1e-3, "the conditional field is not the unconditional one (labels matter)");

    const opts = { perClass: 2, nfe: 8, solver: "heun" as const, guidance: 2, seed: 4, frames: 3 };
    const engine = await sampleImages(loaded, { ...opts, runtime: "engine", out: join(dir, "engine") });
    const onnx = await sampleImages(loaded, { ...opts, runtime: "onnx", out: join(dir, "onnx") });
    let diff = 0;
    for (let i = 0; i < engine.images.length; i++) diff = Math.max(diff, Math.abs(engine.images[i] - onnx.images[i]));
    assert.ok(diff < 1e-3, `engine and ONNX samples differ by ${diff}`);
    assert.ok(existsSync(join(dir, "onnx", "samples.png")) && existsSync(join(dir, "onnx", "trajectory.gif")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("image reflow: teacher pairs are stored and the student is straighter at NFE 1", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-img-reflow-"));
  try {
    await trainImage(base(join(dir, "teacher"), 60));
    const teacher = await loadModel(join(dir, "teacher"), { kind: "image" });
    const { reflowImage } = await import("../../../src/pipelines/reflowImage.js");
    const { flowName } = await import("../../../src/pipelines/run.js");
    await reflowImage({
      teacher,
      teacherPath: join(dir, "teacher"),
      out: join(dir, "reflow"),
      pairs: 64,
      steps: 60,
      batchSize: 16,
      lr: 1e-3,
      seed: 2,
      emaDecay: 0.9,
      warmStart: true,
      pairSolver: "heun",
      pairNfe: 16,
      guidance: 1,
    });
    assert.ok(existsSync(join(dir, "reflow", "pairs.safetensors")));
    const student = await loadModel(join(dir, "reflow"), { kind: "image" });
    assert.deepEqual(
      [(student.config as { reflow?: { pairs: number; round: number } }).reflow?.pairs, (student.config.reflow as { round: number }).round],
      [64, 1],
    );
    assert.equal(flowName(student.config), "2-rectified flow", "pictures (loss.png) name the student by its round");
    // Both models from the same noise: one Euler step vs an accurate solve of the teacher.
    const opts = { perClass: 4, solver: "euler" as const, guidance: 1, seed: 11, frames: 2, runtime: "onnx" as const };
    const target = await sampleImages(teacher, { ...opts, nfe: 32, out: join(dir, "t32") });
    const teacher1 = await sampleImages(teacher, { ...opts, nfe: 1, out: join(dir, "t1") });
    const student1 = await sampleImages(student, { ...opts, nfe: 1, out: join(dir, "s1") });
    const mse = (a: Float32Array) => a.reduce((s, v, i) => s + (v - target.images[i]) ** 2, 0) / a.length;
    console.log(
      `NFE-1 distance to the teacher's 32-step samples: teacher ${mse(teacher1.images).toFixed(4)}, reflow ${mse(student1.images).toFixed(4)}`,
    );
    assert.ok(mse(student1.images) < 0.7 * mse(teacher1.images), "reflow's one-step samples are closer to the teacher's accurate samples");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
