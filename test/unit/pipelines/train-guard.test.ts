// One bad step must not destroy a run: a step whose loss or gradient norm is not finite changes
// nothing (weights, Adam moments, EMA, update count), is counted and recorded, and only a long run of
// them stops training, with a message naming the step and the cause, and the last good checkpoint kept.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { initEngine, np, nn, fromHost, toHost, type Array } from "../../../src/engine/index.js";
import { Rng } from "../../../src/core/rng.js";
import { UserError } from "../../../src/core/errors.js";
import { FlowTrainer, type FlowBatch } from "../../../src/core/train.js";
import type { VelocityModel } from "../../../src/core/models/family.js";
import { DEFAULT_ADAM, type HostParams } from "../../../src/core/optim.js";
import { initMlp, mlpModel, type MlpConfig } from "../../../src/core/models/mlp.js";
import { silu } from "../../../src/core/models/layers.js";
import { getScheduler, pathCoefficients } from "../../../src/core/paths.js";
import { sampleToy } from "../../../src/data/toy2d.js";
import { runTrainingLoop, MAX_CONSECUTIVE_SKIPS } from "../../../src/pipelines/loop.js";
import { stateToTensors, tensorsToState } from "../../../src/pipelines/state.js";
import { firstNonFinite, loadCheckpoint, saveCheckpoint } from "../../../src/io/checkpoint.js";
import { assertTreeKept, snapshotTree, tempDir } from "../../helpers/cli.js";

const CFG: MlpConfig = { dim: 2, hidden: 16, depth: 2, timeEmbDim: 8 };
const scheduler = getScheduler("straight");

function batches(count: number, seed: number): FlowBatch[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => {
    const t = rng.uniforms(32);
    return { x0: rng.normals(64), x1: sampleToy("moons", 32, rng), t, coef: pathCoefficients(scheduler, t) };
  });
}

function poisoned(b: FlowBatch): FlowBatch {
  const x1 = b.x1.slice();
  x1[3] = NaN;
  return { ...b, x1 };
}

function trainer(host: HostParams = initMlp(CFG, new Rng(1)), model: VelocityModel = mlpModel(CFG)): FlowTrainer {
  return new FlowTrainer({ model, params: host, sampleShape: [2], adam: { ...DEFAULT_ADAM, lr: 3e-3 }, emaDecay: 0.9 });
}

type Full = Awaited<ReturnType<FlowTrainer["hostState"]>>;

function assertSameState(a: Full, b: Full, what: string): void {
  for (const part of ["params", "ema", "m", "v"] as const) {
    for (const [name, t] of Object.entries(a[part])) {
      assert.deepEqual(t.data, b[part][name].data, `${what}: ${part}.${name} differs`);
    }
  }
}

test("a non-finite batch leaves weights, Adam moments, EMA and update count untouched; the run goes on as if it never came", async () => {
  await initEngine();
  const good = batches(5, 2);
  const a = trainer();
  const b = trainer();
  try {
    for (const batch of good.slice(0, 3)) await a.step(batch);
    const before = await a.hostState();
    const loss = await a.step(poisoned(good[3]));
    assert.ok(Number.isNaN(loss));
    assert.deepEqual(a.lastStep && { applied: a.lastStep.applied, loss: a.lastStep.loss }, { applied: false, loss: NaN });
    assert.equal(a.stepCount, 4);
    assert.equal(a.skippedSteps, 1);
    assertSameState(before, await a.hostState(), "right after the bad step");
    for (const batch of good.slice(3)) await a.step(batch);
    for (const batch of good) await b.step(batch);
    // Adam's bias correction and the EMA warm-up count applied updates: bit-identical to the clean run.
    assertSameState(await a.hostState(), await b.hostState(), "after the run");
    assert.ok(a.lastStep?.applied && Number.isFinite(a.lastStep.gradNorm) && a.lastStep.gradNorm > 0);
  } finally {
    a.dispose();
    b.dispose();
  }
});

test("a finite loss with a NaN gradient (jax-js's own nn.silu below -88.7) is skipped as a gradient problem", async () => {
  await initEngine();
  // The engine's SiLU, whose gradient is NaN for inputs below about -88.7, and a bias that puts the
  // first hidden layer there: the loss stays finite, the gradient does not.
  const unstable: VelocityModel = {
    apply(params, x, t, labels) {
      labels?.dispose();
      const h = nn.silu(np.dot(np.concatenate([x, t.reshape([-1, 1])], 1), params["w0"].ref).add(params["b0"].ref));
      const out = np.dot(h, params["w1"].ref);
      for (const p of Object.values(params)) p.dispose();
      return out;
    },
  };
  const host: HostParams = {
    w0: { shape: [3, 4], data: new Float32Array(12).fill(0.1) },
    b0: { shape: [4], data: Float32Array.of(-100, 0, 0, 0) },
    w1: { shape: [4, 2], data: new Float32Array(8).fill(0.1) },
  };
  const tr = trainer(host, unstable);
  try {
    const before = await tr.hostState();
    const loss = await tr.step(batches(1, 3)[0]);
    assert.ok(Number.isFinite(loss), `loss ${loss}`);
    assert.equal(tr.lastStep?.applied, false);
    assert.ok(Number.isNaN(tr.lastStep?.gradNorm));
    assertSameState(before, await tr.hostState(), "after the NaN-gradient step");
  } finally {
    tr.dispose();
  }
});

test("an MLP with pre-activations below -90 trains on: every loss, gradient and weight finite, no step skipped", async () => {
  await initEngine();
  const host = initMlp(CFG, new Rng(4));
  const bias = host["layers.1.bias"].data;
  for (let i = 0; i < bias.length; i += 2) bias[i] = -95;
  const tr = trainer(host);
  try {
    for (const batch of batches(30, 5)) {
      const loss = await tr.step(batch);
      assert.ok(
        Number.isFinite(loss) && tr.lastStep?.applied && Number.isFinite(tr.lastStep.gradNorm),
        `step ${tr.stepCount}: loss ${loss}, gradient norm ${tr.lastStep?.gradNorm}`,
      );
    }
    assert.equal(tr.skippedSteps, 0);
    const { params } = await tr.hostState();
    for (const [name, t] of Object.entries(params)) assert.ok(t.data.every(Number.isFinite), `${name} is not finite`);
    // The units really sit below -90 after training: pre-activations of the second layer on a batch.
    const b = batches(1, 6)[0];
    const p = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, fromHost(v.data, v.shape)])) as Record<string, Array>;
    const tFeat = np.concatenate([np.sin(np.zeros([32, 4])), np.cos(np.zeros([32, 4]))], 1); // features of t = 0
    const h0 = silu(np.dot(np.concatenate([fromHost(b.x0, [32, 2]), tFeat], 1), p["layers.0.weight"]).add(p["layers.0.bias"]));
    const pre = await toHost(np.dot(h0, p["layers.1.weight"]).add(p["layers.1.bias"]));
    for (let i = 0; i < pre.length; i += CFG.hidden) assert.ok(pre[i] < -90, `pre-activation ${pre[i]}`);
    for (const k of ["layers.2.weight", "layers.2.bias"]) p[k].dispose();
  } finally {
    tr.dispose();
  }
});

test(`${MAX_CONSECUTIVE_SKIPS} bad steps in a row stop the run naming the step and the cause; the last good checkpoint is kept`, async () => {
  await initEngine();
  const dir = tempDir("fm-guard-");
  const tr = trainer();
  const good = batches(40, 7);
  const losses: number[] = [];
  const skipped: number[] = [];
  let kept: Map<string, string> | null = null;
  const save = async () => {
    const state = await tr.hostState();
    await saveCheckpoint(dir, {
      config: { format: "flowmatch-checkpoint", version: 1, kind: "2d", step: tr.stepCount },
      tensors: stateToTensors({ ...state, losses, skipped }),
    });
    if (tr.stepCount === 10) kept = snapshotTree(dir);
  };
  const lines: string[] = [];
  const progress: number[] = [];
  try {
    await assert.rejects(
      runTrainingLoop({
        trainer: tr,
        steps: 100,
        losses,
        skipped,
        lr: 3e-3,
        save,
        checkpointEvery: 5,
        onLog: (l) => lines.push(l),
        onProgress: (p) => progress.push(p.skipped),
        // Step 4 is one isolated bad batch; from step 13 on the data is broken for good.
        nextBatch: (done) => (done === 3 || done >= 12 ? poisoned(good[done]) : good[done]),
      }),
      (err: unknown) => {
        assert.ok(err instanceof UserError, String(err));
        const m = err.message;
        assert.match(m, /training stopped at step 32: 20 steps in a row \(13-32\) had a non-finite loss/);
        assert.match(m, /the checkpoint from step 10 is kept/);
        assert.match(m, /NaN or infinite values in x1 \(data\)/);
        assert.doesNotMatch(m, /--lr/);
        return true;
      },
    );
    assert.deepEqual(skipped, [4, ...Array.from({ length: 20 }, (_, i) => 13 + i)]);
    assert.equal(progress[3], 1, "the progress line counts the skipped step");
    assert.equal(progress[progress.length - 1], 21);
    assert.match(lines[0], /^step 4: loss is NaN; update skipped, weights unchanged$/);
    assert.equal(losses.length, 11, "losses of the 11 applied steps only");
    // The step-15 save fell inside the bad run and was not made: the step-10 files are byte for byte intact.
    assert.ok(kept);
    assertTreeKept(kept, dir);
    const ckpt = await loadCheckpoint(dir);
    assert.equal(ckpt.config.step, 10);
    assert.equal(firstNonFinite(ckpt.tensors), null);
    assert.deepEqual(tensorsToState(ckpt.tensors, dir).skipped, [4]);
  } finally {
    tr.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("no checkpoint is written with a non-finite value; the one on disk stays", async () => {
  const dir = tempDir("fm-guard-");
  try {
    const config = { format: "flowmatch-checkpoint" as const, version: 1 as const, kind: "2d", step: 1 };
    await saveCheckpoint(dir, { config, tensors: { w: { dtype: "F32", shape: [2], data: Float32Array.of(1, 2) } } });
    const before = snapshotTree(dir);
    await assert.rejects(
      saveCheckpoint(dir, {
        config: { ...config, step: 2 },
        tensors: { w: { dtype: "F32", shape: [2], data: Float32Array.of(1, Infinity) } },
      }),
      (err: unknown) =>
        err instanceof UserError &&
        /not writing the step-2 checkpoint .*w\[1\] = Infinity.*the checkpoint already there is kept/.test(err.message),
    );
    assertTreeKept(before, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("assertTrainingFits asks the model's family: its estimate, description and flags; a family without estimates passes", async () => {
  const { assertTrainingFits } = await import("../../../src/pipelines/trainers.js");
  const { mlpFamily } = await import("../../../src/core/models/mlp.js");
  const cfg: MlpConfig = { dim: 2, hidden: 8, depth: 1, timeEmbDim: 4 };
  const gib = { trainBytes: (_: MlpConfig, batch: number) => batch * 1024 ** 3, forwardBytes: () => 0, smaller: "--widgets" };
  const family = { ...mlpFamily, memory: gib };
  assertTrainingFits("jax", family, cfg, 4); // 4 GiB: exactly the engine's limit
  assert.throws(
    () => assertTrainingFits("jax", family, cfg, 5),
    (e: unknown) =>
      e instanceof UserError &&
      /^training MLP 1×8 \(\d+ parameters\) on batches of 5 needs about 5\.0 GiB of engine memory.*use a smaller --batch-size or --widgets$/.test(
        e.message,
      ),
  );
  assertTrainingFits("jax", { ...family, memory: undefined }, cfg, 1e9);
});
