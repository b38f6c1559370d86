// The UNet on the ort backend: traced with the engine's conv primitive (NCHW) so onnxruntime runs
// native Conv / ConvTranspose, it must compute the same network and train like the jax backend's
// row-band form, and resume across backends.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { initEngine, fromHost, np, toHost, type Array } from "../../src/engine/index.js";
import { traceToOnnx } from "../../src/engine/onnx/trace.js";
import { Rng } from "../../src/core/rng.js";
import { DEFAULT_ADAM, type HostParams } from "../../src/core/optim.js";
import { unetApply, type UnetConfig } from "../../src/core/models/unet.js";
import { getScheduler, pathCoefficients } from "../../src/core/paths.js";
import { trainStepFn, type FlowBatch, type TrainerOptions } from "../../src/core/train.js";
import { createTrainer } from "../../src/pipelines/trainers.js";
import { trainImage, type ImageTrainOptions } from "../../src/pipelines/images.js";
import { initUnetParams, unetModel } from "../../src/core/models/unet.js";
import type { ImageLayout } from "../../src/core/models/layers.js";
import { encodeIdx } from "../../src/data/idx.js";
import { runCli, tempDir } from "../helpers/cli.js";

const CFG: UnetConfig = { channels: [8, 16, 16], numClasses: 3, timeEmbDim: 8, groups: 4, inChannels: 2, height: 8, width: 12 };

/** Random weights everywhere (the zero-initialised last conv would hide the network from the loss). */
function randomParams(seed: number, cfg = CFG): HostParams {
  const rng = new Rng(seed);
  const p = initUnetParams(cfg, rng);
  for (const { data } of Object.values(p)) for (let i = 0; i < data.length; i++) data[i] += 0.1 * rng.normal();
  return p;
}

function batches(count: number, n: number): FlowBatch[] {
  const rng = new Rng(4);
  const per = CFG.height * CFG.width * CFG.inChannels;
  const sch = getScheduler("straight");
  return Array.from({ length: count }, () => {
    const t = rng.uniforms(n);
    return {
      x0: rng.normals(n * per),
      x1: rng.normals(n * per),
      t,
      coef: pathCoefficients(sch, t),
      labels: Int32Array.from({ length: n }, () => rng.int(CFG.numClasses + 1)),
    };
  });
}

const options = (layout: ImageLayout, cfg = CFG): TrainerOptions => ({
  model: unetModel(cfg, layout),
  params: randomParams(1, cfg),
  sampleShape: [CFG.height, CFG.width, CFG.inChannels],
  adam: { ...DEFAULT_ADAM, lr: 2e-3 },
  emaDecay: 0.99,
});

function relDiff(a: HostParams, b: HostParams): number {
  let d = 0;
  let s = 0;
  for (const k of Object.keys(b)) {
    for (let i = 0; i < b[k].data.length; i++) {
      d = Math.max(d, Math.abs(a[k].data[i] - b[k].data[i]));
      s = Math.max(s, Math.abs(b[k].data[i]));
    }
  }
  return d / s;
}

test("UNet: the NCHW layout (engine conv primitive) computes the same velocity as the row-band layout", async () => {
  await initEngine();
  const hp = randomParams(2);
  const B = 3;
  const rng = new Rng(5);
  const x = rng.normals(B * CFG.height * CFG.width * CFG.inChannels);
  const run = (layout: ImageLayout) => {
    const params: Record<string, Array> = {};
    for (const [k, v] of Object.entries(hp)) params[k] = fromHost(v.data, v.shape);
    const v = unetApply(
      params,
      fromHost(x, [B, CFG.height, CFG.width, CFG.inChannels]),
      np.array(Float32Array.of(0.1, 0.5, 0.9)),
      np.array(Int32Array.of(0, 2, 3), { dtype: np.int32 }),
      CFG,
      layout,
    );
    return toHost(v);
  };
  const [a, b] = [await run("hbwc"), await run("nchw")];
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(a[i]));
  }
  assert.ok(s > 0.1, "the network output is not trivially zero");
  assert.ok(d <= 1e-5 * s, `max diff ${d} vs scale ${s}`);
});

test("UNet step on ort: native Conv and ConvTranspose in the graph; 5 steps agree with the jax backend", async () => {
  await initEngine();
  // The traced step holds the forward convs and their gradients as convolutions.
  const o = options("nchw");
  const zeros = (s: number[]) => np.zeros(s);
  const state = {
    params: {} as Record<string, Array>,
    m: {} as Record<string, Array>,
    v: {} as Record<string, Array>,
    ema: {} as Record<string, Array>,
  };
  for (const g of ["params", "m", "v", "ema"] as const) for (const [k, v] of Object.entries(o.params)) state[g][k] = zeros(v.shape);
  const n = 4;
  const batch = [
    zeros([n, 8, 12, 2]),
    zeros([n, 8, 12, 2]),
    zeros([n]),
    zeros([n, 4]),
    np.zeros([n], { dtype: np.int32 }),
    np.array(0),
    np.array(0),
  ];
  const traced = await traceToOnnx(trainStepFn(o), [state, ...batch]);
  for (const g of Object.values(state)) for (const a of Object.values(g)) a.dispose();
  for (const a of batch) a.dispose();
  assert.ok(traced.primitives.conv >= 3 * 14, `forward + two gradients per conv, got ${traced.primitives.conv}`);
  assert.ok(traced.stats.convTransposes >= 2, "input gradients of the stride-2 convs run as ConvTranspose");
  assert.equal(traced.primitives.pad ?? 0, 0, "no row-band padding left");

  const bs = batches(5, n);
  const ort = await createTrainer("ort", options("nchw"));
  const jax = await createTrainer("jax", options("hbwc"));
  // Data-parallel as train-image runs it: two shards of two labelled images on two threads.
  const dp = await createTrainer("ort", options("nchw"), { threads: 2, dataParallel: true });
  for (let i = 0; i < bs.length; i++) {
    const [lo, lj, ld] = [await ort.step(bs[i]), await jax.step(bs[i]), await dp.step(bs[i])];
    assert.ok(Math.abs(lo - lj) <= 1e-5 * Math.abs(lj), `step ${i + 1}: loss ${lo} vs ${lj}`);
    assert.ok(Math.abs(ld - lj) <= 1e-5 * Math.abs(lj), `step ${i + 1}: data-parallel loss ${ld} vs ${lj}`);
  }
  const [so, sj, sd] = [await ort.hostState(), await jax.hostState(), await dp.hostState()];
  for (const g of ["params", "ema", "m", "v"] as const) {
    const d = relDiff(so[g], sj[g]);
    assert.ok(d <= 1e-4, `${g}: ${d.toExponential(2)}`);
    const e = relDiff(sd[g], sj[g]);
    assert.ok(e <= 1e-4, `data-parallel ${g}: ${e.toExponential(2)}`);
  }
  ort.dispose();
  jax.dispose();
  dp.dispose();
});

test("UNet with 2 res blocks and 2-head attention trains the same on ort (softmax, batched matmuls traced) as on jax", async () => {
  await initEngine();
  const cfg: UnetConfig = { ...CFG, resBlocks: 2, attention: [4, 2], attentionHeads: 2 };
  const bs = batches(4, 4);
  const ort = await createTrainer("ort", options("nchw", cfg));
  const jax = await createTrainer("jax", options("hbwc", cfg));
  for (let i = 0; i < bs.length; i++) {
    const [lo, lj] = [await ort.step(bs[i]), await jax.step(bs[i])];
    assert.ok(Math.abs(lo - lj) <= 1e-5 * Math.abs(lj), `step ${i + 1}: loss ${lo} vs ${lj}`);
  }
  const [so, sj] = [await ort.hostState(), await jax.hostState()];
  assert.ok(Object.keys(sj.params).includes("mid.attn1.qkv.weight"));
  for (const g of ["params", "ema", "m", "v"] as const) {
    const d = relDiff(so[g], sj[g]);
    assert.ok(d <= 1e-4, `${g}: ${d.toExponential(2)}`);
  }
  ort.dispose();
  jax.dispose();
});

/** Class k: a bright bar at rows 2k, 2k+1 of an 8x8 image. */
function writeBars(dir: string, n: number): void {
  mkdirSync(dir, { recursive: true });
  const images = new Uint8Array(n * 64);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 4;
    for (let p = 0; p < 64; p++) images[i * 64 + p] = Math.floor(p / 8) >> 1 === i % 4 ? 230 : 20;
  }
  writeFileSync(join(dir, "train-images-idx3-ubyte"), encodeIdx([n, 8, 8], images));
  writeFileSync(join(dir, "train-labels-idx1-ubyte"), encodeIdx([n], labels));
}

test("train-image: ort then jax --resume continues the jax-only run; the CLI takes --backend", async () => {
  const dir = tempDir();
  const data = join(dir, "bars");
  writeBars(data, 64);
  const base = (out: string, steps: number, backend: "ort" | "jax"): ImageTrainOptions => ({
    dataset: `idx:${data}`,
    steps,
    batchSize: 8,
    lr: 2e-3,
    seed: 0,
    path: "straight",
    timeSampler: "uniform",
    emaDecay: 0.99,
    labelDropout: 0.2,
    limit: 0,
    model: { channels: [8, 16], timeEmbDim: 8, groups: 4 },
    out,
    checkpointEvery: 10,
    resume: false,
    backend,
  });
  const straight = await trainImage(base(join(dir, "jax"), 20, "jax"));
  // On two threads, so the ort half runs as train-image runs it by default: one batch shard per thread.
  const threads = process.env.FLOWMATCH_ORT_THREADS;
  process.env.FLOWMATCH_ORT_THREADS = "2";
  try {
    await trainImage(base(join(dir, "mixed"), 10, "ort"));
  } finally {
    if (threads === undefined) delete process.env.FLOWMATCH_ORT_THREADS;
    else process.env.FLOWMATCH_ORT_THREADS = threads;
  }
  const mixed = await trainImage({ ...base(join(dir, "mixed"), 20, "jax"), resume: true });
  assert.equal(mixed.step, 20);
  for (let i = 0; i < 20; i++) {
    const [a, b] = [mixed.losses[i], straight.losses[i]];
    assert.ok(Math.abs(a - b) <= 1e-4 * Math.abs(b), `step ${i + 1}: ${a} vs ${b}`);
  }

  for (const backend of ["ort", "jax"]) {
    const out = join(dir, `cli-${backend}`);
    const r = runCli(
      [
        "train-image",
        "--dataset",
        `idx:${data}`,
        "--channels",
        "8,16",
        "--groups",
        "4",
        "--time-emb-dim",
        "8",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--per-class",
        "1",
        "--nfe",
        "2",
        "--backend",
        backend,
        "--out",
        out,
      ],
      { env: { ...process.env, FLOWMATCH_ORT_THREADS: "2" } },
    ); // data-parallel on ort: the process still exits
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(readFileSync(join(out, "ckpt.json"), "utf8")).step, 3);
  }

  // --res-blocks / --attention / --attention-heads are recorded; the defaults record nothing (old configs read the same).
  const cli = (out: string, extra: string[]) =>
    runCli([
      "train-image",
      "--dataset",
      `idx:${data}`,
      "--channels",
      "8,16",
      "--groups",
      "4",
      "--time-emb-dim",
      "8",
      "--steps",
      "2",
      "--batch-size",
      "4",
      "--per-class",
      "1",
      "--nfe",
      "1",
      "--solver",
      "euler",
      "--out",
      out,
      ...extra,
    ]);
  const out = join(dir, "attn");
  const r = cli(out, ["--res-blocks", "2", "--attention", "4", "--attention-heads", "2"]);
  assert.equal(r.code, 0, r.err);
  const model = JSON.parse(readFileSync(join(out, "ckpt.json"), "utf8")).model;
  assert.deepEqual([model.resBlocks, model.attention, model.attentionHeads], [2, [4], 2]);
  const plain = JSON.parse(readFileSync(join(dir, "cli-ort", "ckpt.json"), "utf8")).model;
  assert.ok(!("resBlocks" in plain) && !("attention" in plain) && !("attentionHeads" in plain));
  const resumed = cli(out, ["--resume", "--steps", "3", "--res-blocks", "2", "--attention", "8", "--attention-heads", "2"]);
  assert.equal(resumed.code, 1);
  assert.match(resumed.err, /--attention/);
  const bad = cli(join(dir, "bad"), ["--attention", "5"]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /--attention 5: no UNet level is 5 pixels high \(the levels are 8, 4\)/);
  assert.equal(cli(join(dir, "bad"), ["--attention", "x"]).code, 2);
});
