// The ort training backend (the step traced to ONNX, run on onnxruntime) must train exactly like the
// jax backend (jit on jax-js) up to float32 rounding, read and write the same state, and resume
// across backends.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { initEngine } from "../../src/engine/index.js";
import { Rng } from "../../src/core/rng.js";
import { DEFAULT_ADAM, type HostParams } from "../../src/core/optim.js";
import { initMlp, mlpModel, type MlpConfig } from "../../src/core/models/mlp.js";
import { getScheduler, pathCoefficients } from "../../src/core/paths.js";
import { sampleToy } from "../../src/data/toy2d.js";
import type { FlowBatch, Trainer, TrainerOptions } from "../../src/core/train.js";
import { createTrainer, type BackendOptions, type TrainBackend } from "../../src/pipelines/trainers.js";
import { decodeSafetensors } from "../../src/io/safetensors.js";
import { runCli, tempDir } from "../helpers/cli.js";

const CFG: MlpConfig = { dim: 2, hidden: 32, depth: 2, timeEmbDim: 8 };

function options(seed = 0, lr = 2e-3): TrainerOptions {
  return { model: mlpModel(CFG), params: initMlp(CFG, new Rng(seed)), sampleShape: [2], adam: { ...DEFAULT_ADAM, lr }, emaDecay: 0.99 };
}

function batches(count: number, n: number, seed = 1): FlowBatch[] {
  const rng = new Rng(seed);
  const scheduler = getScheduler("straight");
  return Array.from({ length: count }, () => {
    const t = rng.uniforms(n);
    return { x0: rng.normals(2 * n), x1: sampleToy("checkerboard", n, rng), t, coef: pathCoefficients(scheduler, t) };
  });
}

/** Largest |a - b| over every tensor, relative to the largest |b|. */
function relDiff(a: HostParams, b: HostParams): number {
  let diff = 0;
  let scale = 0;
  for (const k of Object.keys(b)) {
    assert.deepEqual(a[k].shape, b[k].shape, k);
    for (let i = 0; i < b[k].data.length; i++) {
      diff = Math.max(diff, Math.abs(a[k].data[i] - b[k].data[i]));
      scale = Math.max(scale, Math.abs(b[k].data[i]));
    }
  }
  return diff / scale;
}

async function run(
  backend: TrainBackend,
  opts: TrainerOptions,
  bs: FlowBatch[],
  lrs?: number[],
  b: BackendOptions = {},
): Promise<{ trainer: Trainer; losses: number[] }> {
  const trainer = await createTrainer(backend, opts, b);
  const losses: number[] = [];
  for (let i = 0; i < bs.length; i++) losses.push(await trainer.step(bs[i], lrs?.[i]));
  return { trainer, losses };
}

async function assertSameState(a: Trainer, b: Trainer, tol: number): Promise<void> {
  const sa = await a.hostState();
  const sb = await b.hostState();
  for (const g of ["params", "ema", "m", "v"] as const) {
    const d = relDiff(sa[g], sb[g]);
    assert.ok(d <= tol, `${g}: relative difference ${d.toExponential(2)} > ${tol}`);
  }
}

test("ort backend: one step and 50 steps (with a last partial batch and an lr schedule) agree with the jax backend", async () => {
  await initEngine();
  const one = batches(1, 128);
  const a1 = await run("ort", options(), one);
  const j1 = await run("jax", options(), one);
  assert.ok(Math.abs(a1.losses[0] - j1.losses[0]) <= 1e-6 * Math.abs(j1.losses[0]), `loss ${a1.losses[0]} vs ${j1.losses[0]}`);
  await assertSameState(a1.trainer, j1.trainer, 1e-5);
  assert.equal(a1.trainer.stepCount, 1);
  a1.trainer.dispose();
  j1.trainer.dispose();

  // 49 full batches, then a partial one (its own graph); a decaying learning rate.
  const many = [...batches(49, 128, 2), ...batches(1, 40, 3)];
  const lrs = many.map((_, i) => 2e-3 * (1 - i / many.length));
  const a = await run("ort", options(), many, lrs);
  const j = await run("jax", options(), many, lrs);
  for (let i = 0; i < many.length; i++) {
    assert.ok(Math.abs(a.losses[i] - j.losses[i]) <= 1e-5 * Math.abs(j.losses[i]), `step ${i + 1}: loss ${a.losses[i]} vs ${j.losses[i]}`);
  }
  await assertSameState(a.trainer, j.trainer, 1e-4);
  // The schedule mattered: a constant rate ends somewhere else.
  const c = await run("ort", options(), many);
  const [sa, sc] = [await a.trainer.hostParams(), await c.trainer.hostParams()];
  assert.ok(relDiff(sc, sa) > 1e-3, "the lr override reaches the ort graph");
  for (const t of [a.trainer, j.trainer, c.trainer]) t.dispose();
});

test("ort backend, data-parallel: 2 and 3 shards (uneven, and a batch smaller than the shard count) train as one graph and as jax", async () => {
  await initEngine();
  // 128 splits evenly in 2 and 43/43/42 in 3; 40 splits 20/20 and 14/13/13; 2 < 3 shards runs as one graph.
  const bs = [...batches(6, 128, 11), ...batches(1, 40, 12), ...batches(1, 2, 13)];
  const one = await run("ort", options(), bs, undefined, { threads: 1 });
  const jax = await run("jax", options(), bs);
  for (const shards of [2, 3]) {
    const dp = await run("ort", options(), bs, undefined, { threads: shards, dataParallel: true });
    for (let i = 0; i < bs.length; i++)
      assert.ok(
        Math.abs(dp.losses[i] - one.losses[i]) <= 1e-6 * Math.abs(one.losses[i]),
        `${shards} shards, step ${i + 1}: loss ${dp.losses[i]} vs ${one.losses[i]}`,
      );
    await assertSameState(dp.trainer, one.trainer, 1e-5);
    await assertSameState(dp.trainer, jax.trainer, 1e-4);
    assert.equal(dp.trainer.stepCount, bs.length);
    // The gradient norm is the whole batch's, not a shard's.
    const norm = dp.trainer.lastStep?.gradNorm ?? Number.NaN;
    assert.ok(Math.abs(norm - (one.trainer.lastStep?.gradNorm ?? 0)) <= 1e-5 * norm, `gradient norm ${norm}`);

    // Resume on the data-parallel backend continues bit for bit.
    const head = await run("ort", options(), bs.slice(0, 4), undefined, { threads: shards, dataParallel: true });
    const s = await head.trainer.hostState();
    head.trainer.dispose();
    const resume = { ema: s.ema, m: s.m, v: s.v, step: 4 };
    const tail = await run("ort", { ...options(), params: s.params, resume }, bs.slice(4), undefined, {
      threads: shards,
      dataParallel: true,
    });
    assert.deepEqual(tail.losses, dp.losses.slice(4));
    const [st, sd] = [await tail.trainer.hostState(), await dp.trainer.hostState()];
    for (const g of ["params", "ema", "m", "v"] as const) assert.equal(relDiff(st[g], sd[g]), 0, `${shards} shards: ${g} after resume`);
    tail.trainer.dispose();
    dp.trainer.dispose();
  }
  one.trainer.dispose();
  jax.trainer.dispose();
});

test("ort backend: resume from the other backend's state continues the same run", async () => {
  await initEngine();
  const bs = batches(20, 64, 5);
  const straight = await run("jax", options(), bs);
  for (const [first, second] of [
    ["ort", "jax"],
    ["jax", "ort"],
  ] as const) {
    const head = await run(first, options(), bs.slice(0, 10));
    const s = await head.trainer.hostState();
    head.trainer.dispose();
    const tail = await run(second, { ...options(), params: s.params, resume: { ema: s.ema, m: s.m, v: s.v, step: 10 } }, bs.slice(10));
    assert.equal(tail.trainer.stepCount, 20);
    for (let i = 0; i < 10; i++) {
      const want = straight.losses[10 + i];
      assert.ok(
        Math.abs(tail.losses[i] - want) <= 1e-5 * Math.abs(want),
        `${first}->${second} step ${11 + i}: ${tail.losses[i]} vs ${want}`,
      );
    }
    await assertSameState(tail.trainer, straight.trainer, 1e-4);
    tail.trainer.dispose();
  }
  straight.trainer.dispose();
});

test("CLI: train2d --backend ort and --backend jax both train; a checkpoint from one resumes on the other", async () => {
  const dir = tempDir();
  const common = [
    "train2d",
    "--dataset",
    "moons",
    "--hidden",
    "16",
    "--depth",
    "2",
    "--time-emb-dim",
    "4",
    "--batch-size",
    "32",
    "--n",
    "200",
    "--nfe",
    "4",
    "--frames",
    "2",
  ];
  const ortDir = join(dir, "ort");
  const a = runCli([...common, "--steps", "20", "--backend", "ort", "--out", ortDir]);
  assert.equal(a.code, 0, a.err);
  const jaxDir = join(dir, "jax");
  const b = runCli([...common, "--steps", "20", "--backend", "jax", "--out", jaxDir]);
  assert.equal(b.code, 0, b.err);
  // Same run on either backend: the saved weights agree to float32 rounding.
  const wa = decodeSafetensors(readFileSync(join(ortDir, "ckpt.safetensors"))).tensors;
  const wb = decodeSafetensors(readFileSync(join(jaxDir, "ckpt.safetensors"))).tensors;
  assert.deepEqual(Object.keys(wa).sort(), Object.keys(wb).sort());
  for (const k of Object.keys(wa)) {
    const x = wa[k].data as Float32Array;
    const y = wb[k].data as Float32Array;
    for (let i = 0; i < x.length; i++)
      assert.ok(Math.abs(x[i] - y[i]) <= 1e-4 * Math.max(1, Math.abs(y[i])), `${k}[${i}]: ${x[i]} vs ${y[i]}`);
  }
  // Resume the ort checkpoint on the jax backend.
  const c = runCli([...common, "--steps", "30", "--backend", "jax", "--resume", "--out", ortDir]);
  assert.equal(c.code, 0, c.err);
  assert.match(c.err, /resuming from step 20/);
  assert.equal(JSON.parse(readFileSync(join(ortDir, "ckpt.json"), "utf8")).step, 30);
  assert.ok(existsSync(join(ortDir, "samples.png")));
  const bad = runCli([...common, "--steps", "5", "--backend", "torch", "--out", join(dir, "bad")]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--backend.*torch.*ort, jax|ort, jax/);
});

test("both backends skip a non-finite step alike: state untouched, counted, and the run goes on as if the batch never came", async () => {
  await initEngine();
  const good = batches(6, 48, 7);
  const bad = { ...good[3], x1: good[3].x1.slice() };
  // The last sample: in the second shard of a data-parallel step, so the other thread's NaN must reach the update.
  bad.x1[95] = NaN;
  const clean = await run("jax", options(), good.slice(0, 5));
  for (const [backend, b] of [
    ["ort", {}],
    ["ort", { threads: 2, dataParallel: true }],
    ["jax", {}],
  ] as const) {
    const trainer = await createTrainer(backend, options(), b);
    const label = `${backend}${"dataParallel" in b ? " data-parallel" : ""}`;
    try {
      for (const x of good.slice(0, 3)) await trainer.step(x);
      const before = await trainer.hostState();
      const loss = await trainer.step(bad);
      assert.ok(!Number.isFinite(loss), `${label}: the poisoned batch's loss is ${loss}`);
      assert.deepEqual(trainer.lastStep && { applied: trainer.lastStep.applied }, { applied: false }, label);
      assert.equal(trainer.skippedSteps, 1, label);
      assert.equal(trainer.stepCount, 4, label);
      const after = await trainer.hostState();
      for (const g of ["params", "ema", "m", "v"] as const)
        assert.equal(relDiff(after[g], before[g]), 0, `${label}: ${g} changed on a skipped step`);
      // Adam's bias correction and the EMA warm-up count applied updates, so the next two steps match
      // a run that never saw the bad batch.
      for (const x of good.slice(3, 5)) await trainer.step(x);
      await assertSameState(trainer, clean.trainer, 1e-4);
    } finally {
      trainer.dispose();
    }
  }
  clean.trainer.dispose();
});
