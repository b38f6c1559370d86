// Learning-rate schedules: the values of lrAt, that the training loop hands each step its scheduled
// rate (fresh and resumed), that both backends take the rate they are given, that train2d and
// train-image record and follow it, and the CLI flags.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { initEngine } from "../../../src/engine/index.js";
import { Rng } from "../../../src/core/rng.js";
import { UserError } from "../../../src/core/errors.js";
import { checkLrSchedule, lrAt, type LrSchedule } from "../../../src/core/lrSchedule.js";
import { DEFAULT_ADAM, type HostParams } from "../../../src/core/optim.js";
import { initMlp, mlpModel, type MlpConfig } from "../../../src/core/models/mlp.js";
import { getScheduler, pathCoefficients } from "../../../src/core/paths.js";
import { sampleToy } from "../../../src/data/toy2d.js";
import type { FlowBatch, Trainer } from "../../../src/core/train.js";
import { runTrainingLoop } from "../../../src/pipelines/loop.js";
import { createTrainer, type TrainBackend } from "../../../src/pipelines/trainers.js";
import { trainToy2d, type Toy2dTrainOptions } from "../../../src/pipelines/toy2d.js";
import { loadModel } from "../../../src/pipelines/model.js";
import { trainImage, type ImageTrainOptions } from "../../../src/pipelines/images.js";
import { unetFamily, type UnetConfig } from "../../../src/core/models/unet.js";
import type { ImageDataset } from "../../../src/data/images.js";
import { runCli, snapshotTree, assertTreeKept, tempDir } from "../../helpers/cli.js";

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b));

test("lrAt: linear warm-up to the peak, then constant or a half cosine down to zero at the last step", () => {
  const c: LrSchedule = { kind: "constant", lr: 0.01, warmup: 4, steps: 100 };
  assert.deepEqual(
    [0, 1, 2, 3, 4, 50, 99].map((d) => lrAt(c, d)),
    [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01, 0.01],
  );
  assert.equal(lrAt({ ...c, warmup: 0 }, 0), 0.01);
  const s: LrSchedule = { kind: "cosine", lr: 0.01, warmup: 10, steps: 110 };
  assert.ok(close(lrAt(s, 0), 0.001));
  assert.ok(close(lrAt(s, 9), 0.01));
  assert.ok(close(lrAt(s, 10), 0.01)); // the first post-warm-up step is at the peak
  assert.ok(close(lrAt(s, 60), 0.005)); // half way through the decay: lr (1 + cos(pi/2)) / 2
  assert.ok(close(lrAt(s, 35), (0.01 * (1 + Math.cos(Math.PI / 4))) / 2));
  assert.ok(close(lrAt(s, 109), (0.01 * (1 + Math.cos((Math.PI * 99) / 100))) / 2)); // the last step: small, not zero
  assert.ok(lrAt(s, 109) > 0 && lrAt(s, 109) < 3e-5);
  assert.equal(lrAt(s, 110), 0);
  for (let d = 11; d < 110; d++) assert.ok(lrAt(s, d) < lrAt(s, d - 1), `cosine decreases at ${d}`);
});

test("checkLrSchedule refuses what cannot be followed, naming the flag", () => {
  const ok: LrSchedule = { kind: "cosine", lr: 1e-3, warmup: 10, steps: 20 };
  assert.equal(checkLrSchedule(ok), ok);
  const refuses = (s: LrSchedule, re: RegExp) =>
    assert.throws(
      () => checkLrSchedule(s),
      (e: unknown) => e instanceof UserError && re.test(e.message),
    );
  refuses({ ...ok, warmup: 20 }, /--warmup 20 is not shorter than --steps 20/);
  refuses({ ...ok, warmup: -1 }, /--warmup must be a non-negative integer/);
  refuses({ ...ok, lr: 0 }, /--lr must be positive/);
  refuses({ ...ok, kind: "step" as LrSchedule["kind"] }, /unknown --lr-schedule "step"; choose one of: constant, cosine/);
});

const CFG: MlpConfig = { dim: 2, hidden: 16, depth: 2, timeEmbDim: 4 };

function batch(n: number, seed: number): FlowBatch {
  const rng = new Rng(seed);
  const t = rng.uniforms(n);
  return { x0: rng.normals(2 * n), x1: sampleToy("checkerboard", n, rng), t, coef: pathCoefficients(getScheduler("straight"), t) };
}

/** The trainer, recording the rate of every step it is asked to take. */
function recording(trainer: Trainer, seen: (number | undefined)[]): Trainer {
  return new Proxy(trainer, {
    get(target, key) {
      if (key === "step") return (b: FlowBatch, lr?: number) => (seen.push(lr), target.step(b, lr));
      const v = Reflect.get(target, key, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

test("the training loop gives each step the rate of its number, and a resumed trainer continues the curve", async () => {
  await initEngine();
  const schedule: LrSchedule = { kind: "cosine", lr: 4e-3, warmup: 2, steps: 8 };
  const opts = {
    model: mlpModel(CFG),
    params: initMlp(CFG, new Rng(0)),
    sampleShape: [2],
    adam: { ...DEFAULT_ADAM, lr: 4e-3 },
    emaDecay: 0.9,
  };
  const seen: (number | undefined)[] = [];
  const fresh = await createTrainer("jax", opts);
  await runTrainingLoop({ trainer: recording(fresh, seen), steps: 8, losses: [], lr: 4e-3, schedule, nextBatch: (d) => batch(32, d) });
  assert.deepEqual(
    seen,
    [0, 1, 2, 3, 4, 5, 6, 7].map((d) => lrAt(schedule, d)),
  );
  fresh.dispose();

  // From step 5 of the same run: steps 6-8 get the rates of steps 6-8, not a new warm-up.
  const state = await (async () => {
    const t = await createTrainer("jax", opts);
    await runTrainingLoop({ trainer: t, steps: 5, losses: [], lr: 4e-3, schedule, nextBatch: (d) => batch(32, d) });
    const s = await t.hostState();
    t.dispose();
    return s;
  })();
  const later: (number | undefined)[] = [];
  const resumed = await createTrainer("jax", { ...opts, params: state.params, resume: { ...state, step: 5 } });
  await runTrainingLoop({ trainer: recording(resumed, later), steps: 8, losses: [], lr: 4e-3, schedule, nextBatch: (d) => batch(32, d) });
  assert.deepEqual(
    later,
    [5, 6, 7].map((d) => lrAt(schedule, d)),
  );
  resumed.dispose();

  // Without a schedule the trainer keeps its own constant rate.
  const plain: (number | undefined)[] = [];
  const t = await createTrainer("jax", opts);
  await runTrainingLoop({ trainer: recording(t, plain), steps: 2, losses: [], lr: 4e-3, nextBatch: (d) => batch(32, d) });
  assert.deepEqual(plain, [undefined, undefined]);
  t.dispose();
});

/** Largest |a - b| over every weight. */
function maxMove(a: HostParams, b: HostParams): number {
  let m = 0;
  for (const k of Object.keys(a)) for (let i = 0; i < a[k].data.length; i++) m = Math.max(m, Math.abs(a[k].data[i] - b[k].data[i]));
  return m;
}

for (const backend of ["ort", "jax"] as const satisfies readonly TrainBackend[]) {
  test(`${backend} backend follows the schedule: Adam's first step moves the weights by the first step's rate`, async () => {
    // Adam's first update is lr * g / |g| per weight (bias-corrected), so the largest move is that step's rate.
    const dir = tempDir("fm-lr-");
    const base: Toy2dTrainOptions = {
      dataset: "checkerboard",
      steps: 1,
      batchSize: 64,
      lr: 0.01,
      seed: 3,
      path: "straight",
      timeSampler: "uniform",
      emaDecay: 0.9,
      coupling: "independent",
      model: CFG,
      out: dir,
      checkpointEvery: 100,
      resume: false,
      force: true,
      backend,
    };
    const init = initMlp(CFG, new Rng(3));
    const moved = async (o: Partial<Toy2dTrainOptions>) => maxMove((await trainToy2d({ ...base, ...o })).model.params, init);
    const constant = await moved({});
    assert.ok(Math.abs(constant - 0.01) < 1e-5, `constant: first step moved ${constant}`);
    // 4 warm-up steps of a 40-step run: the first step takes a quarter of --lr.
    const warm = await moved({ steps: 40, warmup: 4, lrSchedule: "cosine", shouldStop: () => true });
    assert.ok(Math.abs(warm - 0.0025) < 1e-5, `warm-up: first step moved ${warm}`);
  });
}

test("train2d records the schedule in the checkpoint, and stop + --resume trains exactly as one run", async () => {
  const dir = tempDir("fm-lr-resume-");
  const base: Toy2dTrainOptions = {
    dataset: "moons",
    steps: 12,
    batchSize: 32,
    lr: 5e-3,
    lrSchedule: "cosine",
    warmup: 3,
    seed: 1,
    path: "straight",
    timeSampler: "uniform",
    emaDecay: 0.9,
    coupling: "independent",
    model: CFG,
    out: join(dir, "whole"),
    checkpointEvery: 100,
    resume: false,
    backend: "jax",
  };
  const whole = await trainToy2d(base);
  let stops = 0;
  const split = join(dir, "split");
  const first = await trainToy2d({ ...base, out: split, shouldStop: () => ++stops >= 5 });
  assert.equal(first.step, 5);
  const rest = await trainToy2d({ ...base, out: split, resume: true });
  assert.equal(rest.startStep, 5);
  assert.deepEqual(rest.model.params, whole.model.params);
  assert.deepEqual(rest.model.losses, whole.model.losses);
  const saved = await loadModel(split, { kind: "2d" });
  assert.equal((saved.config.train as { lrSchedule: string }).lrSchedule, "cosine");
  assert.equal((saved.config.train as { warmup: number }).warmup, 3);
});

test("CLI: --warmup not shorter than --steps, and an unknown --lr-schedule, are refused with nothing written", () => {
  const dir = tempDir("fm-lr-cli-");
  const before = snapshotTree(dir);
  const out = join(dir, "run");
  const long = runCli(["train2d", "--dataset", "moons", "--steps", "10", "--warmup", "10", "--hidden", "8", "--depth", "1", "--out", out]);
  assert.equal(long.code, 1, long.err);
  assert.match(long.err, /--warmup 10 is not shorter than --steps 10: the rate would never reach --lr; use a smaller --warmup/);
  const bad = runCli(["train2d", "--dataset", "moons", "--steps", "10", "--lr-schedule", "step", "--out", out]);
  assert.equal(bad.code, 2, bad.err);
  assert.match(bad.err, /--lr-schedule/);
  assert.ok(!existsSync(join(out, "ckpt.json")));
  assertTreeKept(before, dir);
});

test("CLI: a short run without --warmup warms up for at most a tenth of its steps, and says so in its checkpoint", () => {
  const dir = tempDir("fm-lr-cli-");
  const r = runCli([
    "train2d",
    "--dataset",
    "moons",
    "--steps",
    "20",
    "--lr-schedule",
    "cosine",
    "--hidden",
    "8",
    "--depth",
    "1",
    "--n",
    "50",
    "--frames",
    "2",
    "--out",
    dir,
  ]);
  assert.equal(r.code, 0, r.err);
  const train = JSON.parse(readFileSync(join(dir, "ckpt.json"), "utf8")).train as { lrSchedule: string; warmup: number };
  assert.equal(train.lrSchedule, "cosine");
  assert.equal(train.warmup, 2); // the default 1,000, cut to a tenth of 20 steps
});

test("train-image follows and records the schedule: the first warm-up step moves the weights by lr / warmup", async () => {
  const dir = tempDir("fm-lr-img-");
  const n = 64;
  const rng = new Rng(5);
  const data: ImageDataset = {
    name: "noise",
    images: rng.normals(n * 8 * 8).map((v) => Math.tanh(v)),
    labels: Int32Array.from({ length: n }, (_, i) => i % 2),
    n,
    height: 8,
    width: 8,
    channels: 1,
    numClasses: 2,
    classNames: ["a", "b"],
  };
  const base: ImageTrainOptions = {
    dataset: "noise",
    data,
    steps: 40,
    batchSize: 8,
    lr: 0.01,
    seed: 2,
    path: "straight",
    timeSampler: "uniform",
    emaDecay: 0.9,
    labelDropout: 0.1,
    limit: 0,
    model: { channels: [4, 8], timeEmbDim: 8, groups: 2 },
    out: join(dir, "run"),
    checkpointEvery: 100,
    resume: false,
    force: true,
    backend: "jax",
    shouldStop: () => true, // one step
  };
  const cfg: UnetConfig = { ...base.model, numClasses: 2, inChannels: 1, height: 8, width: 8 } as UnetConfig;
  const init = unetFamily.init(cfg, new Rng(2));
  const constant = await trainImage(base);
  assert.ok(Math.abs(maxMove(constant.model.params, init) - 0.01) < 1e-5, "constant: the first step takes --lr");
  const warm = await trainImage({ ...base, lrSchedule: "cosine", warmup: 4 });
  assert.ok(Math.abs(maxMove(warm.model.params, init) - 0.0025) < 1e-5, "warm-up 4: the first step takes a quarter of --lr");
  const train = (await loadModel(join(dir, "run"), { kind: "image" })).config.train as { lrSchedule: string; warmup: number };
  assert.equal(train.lrSchedule, "cosine");
  assert.equal(train.warmup, 4);
  // An older checkpoint's run (no schedule given) is recorded as constant with no warm-up.
  await trainImage(base);
  const plain = (await loadModel(join(dir, "run"), { kind: "image" })).config.train as { lrSchedule: string; warmup: number };
  assert.deepEqual([plain.lrSchedule, plain.warmup], ["constant", 0]);
});

test("CLI train-image: --warmup not shorter than --steps is refused before any data is read, with nothing written", () => {
  const dir = tempDir("fm-lr-img-cli-");
  const before = snapshotTree(dir);
  const out = join(dir, "run");
  const r = runCli(["train-image", "--dataset", "mnist", "--steps", "10", "--warmup", "10", "--out", out]);
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /--warmup 10 is not shorter than --steps 10: the rate would never reach --lr; use a smaller --warmup/);
  const bad = runCli(["train-image", "--dataset", "mnist", "--lr-schedule", "step", "--out", out]);
  assert.equal(bad.code, 2, bad.err);
  assert.match(bad.err, /--lr-schedule/);
  assert.ok(!existsSync(out));
  assertTreeKept(before, dir);
});
