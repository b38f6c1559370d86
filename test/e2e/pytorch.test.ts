// Moving a run to PyTorch and back (src/pipelines/pytorch.ts, pytorch/model.py, pytorch/train.py).
// The layout conversions are checked without PyTorch; the rest needs /usr/bin/python3 with torch
// (Debian's python3-torch; FLOWMATCH_PYTHON overrides) and is skipped, saying so, where it is missing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { initEngine, fromHost, np, toHost } from "../../src/engine/index.js";
import { Rng } from "../../src/core/rng.js";
import { DEFAULT_ADAM, type HostParams } from "../../src/core/optim.js";
import { cfmLoss, FlowTrainer, toEngine } from "../../src/core/train.js";
import { getScheduler, pathCoefficients } from "../../src/core/paths.js";
import { initMlp, mlpModel, mlpParamShapes, type MlpConfig } from "../../src/core/models/mlp.js";
import type { UnetConfig } from "../../src/core/models/unet.js";
import { initUnetParams, unetModel } from "../../src/core/models/unet.js";
import { encodeIdx } from "../../src/data/idx.js";
import { loadCheckpoint, saveCheckpoint, type CheckpointConfig } from "../../src/io/checkpoint.js";
import { decodeSafetensors, encodeSafetensors, type HostTensor } from "../../src/io/safetensors.js";
import { fromTorchTensor, paramsToTorch, toTorchTensor, torchShape } from "../../src/io/pytorch/layout.js";
import { stateToTensors, tensorsToState } from "../../src/pipelines/state.js";
import { exportPytorch } from "../../src/pipelines/pytorch.js";
import { loadModel } from "../../src/pipelines/model.js";
import { sampleToy } from "../../src/data/toy2d.js";
import { runCli, tempDir } from "../helpers/cli.js";
import { colourFolder } from "../helpers/colour.js";
import { otCoupleByClass } from "../../src/core/coupling.js";
import { lrAt } from "../../src/core/lrSchedule.js";

const PYTHON = process.env.FLOWMATCH_PYTHON ?? "/usr/bin/python3";
const probe = spawnSync(PYTHON, ["-c", "import torch, numpy"], { encoding: "utf8" });
const scipyProbe = spawnSync(PYTHON, ["-c", "import scipy"], { encoding: "utf8" });
const noScipy: string | false =
  scipyProbe.status === 0 ? false : `scipy not available: ${PYTHON} -c "import scipy" failed; install python3-scipy`;
const noTorch: string | false =
  probe.status === 0
    ? false
    : `PyTorch not available: ${PYTHON} -c "import torch" failed (${(probe.error?.message ?? probe.stderr.trim().split("\n").pop()) || `exit ${probe.status}`}); install python3-torch`;

/** Runs a python snippet with the package folder on sys.path; returns stdout. */
function python(code: string, cwd: string, timeout = 120_000): string {
  const r = spawnSync(PYTHON, ["-c", code], { cwd, encoding: "utf8", timeout });
  assert.equal(r.status, 0, `python failed:\n${r.stderr}`);
  return r.stdout;
}

const f32 = (data: Float32Array, shape: number[]): HostTensor => ({ dtype: "F32", shape, data });
const maxAbs = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
const maxDiff = (a: Float32Array, b: ArrayLike<number>) => {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
};

/** A copy of `p` with every entry moved by scale * N(0, 1). */
function perturb(p: HostParams, rng: Rng, scale: number, positive = false): HostParams {
  const out: HostParams = {};
  for (const [k, { shape, data }] of Object.entries(p)) {
    const d = data.map((x) => x + scale * rng.normal());
    out[k] = { shape, data: positive ? d.map((x) => Math.abs(x) * 1e-3) : d };
  }
  return out;
}

/** A flowmatch checkpoint with distinct weights, EMA and Adam moments, as a run at step 7 with step 3 skipped. */
async function writeCheckpoint(
  dir: string,
  kind: "2d" | "image",
  model: MlpConfig | UnetConfig,
  params: HostParams,
  extra: Record<string, unknown>,
): Promise<void> {
  const rng = new Rng(11);
  const train = {
    steps: 7,
    batchSize: 16,
    lr: 2e-3,
    seed: 3,
    path: extra.path,
    timeSampler: "uniform",
    emaDecay: 0.99,
    ...(kind === "2d" ? { coupling: "independent" } : { labelDropout: 0.1, limit: 0 }),
  };
  const config: CheckpointConfig = {
    format: "flowmatch-checkpoint",
    version: 1,
    kind,
    runId: "test-run",
    step: 7,
    model,
    train: { ...train, dataset: extra.dataset },
    ...extra,
  };
  const state = {
    params,
    ema: perturb(params, rng, 0.05),
    m: perturb(params, rng, 0.01),
    v: perturb(params, rng, 1, true),
    losses: [3, 2.5, 2.2, 2, 1.9, 1.8],
    skipped: [3],
  };
  for (const p of Object.values(state.m)) p.data.forEach((_, i, a) => (a[i] = 0.01 * rng.normal()));
  await saveCheckpoint(dir, { config, tensors: stateToTensors(state) });
}

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

test("layout: dense and conv tensors go to PyTorch's [out, in] / [Cout, Cin, k, k] and back unchanged", () => {
  // im2col row (ky * 3 + kx) * cin + ci, column co holds w[co][ci][ky][kx]; encode the indices in the values.
  const cin = 2;
  const cout = 3;
  const data = new Float32Array(9 * cin * cout);
  for (let ky = 0; ky < 3; ky++)
    for (let kx = 0; kx < 3; kx++)
      for (let ci = 0; ci < cin; ci++)
        for (let co = 0; co < cout; co++) data[((ky * 3 + kx) * cin + ci) * cout + co] = 1000 * co + 100 * ci + 10 * ky + kx;
  const t = toTorchTensor("unet", "down.0.res.conv1.weight", [9 * cin, cout], data);
  assert.deepEqual(t.shape, [cout, cin, 3, 3]);
  for (let co = 0; co < cout; co++)
    for (let ci = 0; ci < cin; ci++)
      for (let ky = 0; ky < 3; ky++)
        for (let kx = 0; kx < 3; kx++) assert.equal(t.data[((co * cin + ci) * 3 + ky) * 3 + kx], 1000 * co + 100 * ci + 10 * ky + kx);
  assert.deepEqual(fromTorchTensor("unet", "down.0.res.conv1.weight", [9 * cin, cout], t.data).data, data);
  // 1x1 shortcut, dense (emb, time), the class table and a norm.
  assert.deepEqual(torchShape("unet", "up.0.res.skip.weight", [16, 8]), [8, 16, 1, 1]);
  assert.deepEqual(torchShape("unet", "up.0.res.emb.weight", [32, 8]), [8, 32]);
  assert.deepEqual(torchShape("unet", "time.1.weight", [32, 32]), [32, 32]);
  assert.deepEqual(torchShape("unet", "class.weight", [11, 32]), [11, 32]);
  assert.deepEqual(torchShape("unet", "out.norm.weight", [8]), [8]);
  const dense = toTorchTensor("mlp", "layers.0.weight", [2, 3], Float32Array.of(1, 2, 3, 4, 5, 6));
  assert.deepEqual(dense, { shape: [3, 2], data: Float32Array.of(1, 4, 2, 5, 3, 6) });
});

test("export: model.py in the package gives flowmatch's velocity to 1e-5 (MLP with and without time embedding, with Fourier features, UNet, UNet with res blocks and attention; raw and EMA weights)", {
  skip: noTorch,
}, async (t) => {
  await initEngine();
  const root = tempDir("fm-torch-v-");
  const bars = join(root, "bars");
  writeBars(bars, 16);
  const cases: {
    name: string;
    kind: "2d" | "image";
    model: MlpConfig | UnetConfig;
    params: HostParams;
    sample: number[];
    extra: Record<string, unknown>;
  }[] = [
    {
      name: "mlp",
      kind: "2d",
      model: { dim: 2, hidden: 48, depth: 3, timeEmbDim: 32 },
      params: initMlp({ dim: 2, hidden: 48, depth: 3, timeEmbDim: 32 }, new Rng(1)),
      sample: [2],
      extra: { dataset: "moons", path: "straight" },
    },
    {
      name: "mlp-fourier",
      kind: "2d",
      model: { dim: 2, hidden: 16, depth: 2, timeEmbDim: 8, fourierFeatures: 6, fourierScale: 0.5 },
      params: initMlp({ dim: 2, hidden: 16, depth: 2, timeEmbDim: 8, fourierFeatures: 6, fourierScale: 0.5 }, new Rng(5)),
      sample: [2],
      extra: { dataset: "moons", path: "straight" },
    },
    {
      name: "mlp-raw-t",
      kind: "2d",
      model: { dim: 2, hidden: 16, depth: 2, timeEmbDim: 0 },
      params: initMlp({ dim: 2, hidden: 16, depth: 2, timeEmbDim: 0 }, new Rng(2)),
      sample: [2],
      extra: { dataset: "moons", path: "straight" },
    },
  ];
  const unet: UnetConfig = { channels: [8, 16, 16], numClasses: 4, timeEmbDim: 16, groups: 4, inChannels: 1, height: 8, width: 8 };
  // Zero-initialised convs would make v = 0 whatever PyTorch does; perturb every weight.
  cases.push({
    name: "unet",
    kind: "image",
    model: unet,
    params: perturb(initUnetParams(unet, new Rng(3)), new Rng(4), 0.05),
    sample: [8, 8, 1],
    extra: { dataset: `idx:${bars}`, path: "straight", classNames: ["a", "b", "c", "d"] },
  });
  const attn: UnetConfig = { ...unet, resBlocks: 2, attention: [4], attentionHeads: 2 };
  cases.push({
    name: "unet-attention",
    kind: "image",
    model: attn,
    params: perturb(initUnetParams(attn, new Rng(5)), new Rng(6), 0.05),
    sample: [8, 8, 1],
    extra: { dataset: `idx:${bars}`, path: "straight", classNames: ["a", "b", "c", "d"] },
  });
  for (const c of cases) {
    const ckpt = join(root, c.name);
    await writeCheckpoint(ckpt, c.kind, c.model, c.params, c.extra);
    const pkg = join(root, `${c.name}-pkg`);
    await exportPytorch({ ckpt, out: pkg, dataSize: 100 });
    const { tensors } = await loadCheckpoint(ckpt);
    const state = tensorsToState(tensors, ckpt);
    const n = 5;
    const rng = new Rng(9);
    const per = c.sample.reduce((a, b) => a * b, 1);
    const x = rng.normals(n * per);
    const tt = rng.uniforms(n);
    const y = c.kind === "image" ? Int32Array.of(0, 1, 3, 4, 2) : null; // 4 = the null class
    const model = c.kind === "2d" ? mlpModel(c.model as MlpConfig) : unetModel(c.model as UnetConfig);
    const velocity = async (p: HostParams) =>
      toHost(model.apply(toEngine(p), fromHost(x, [n, ...c.sample]), fromHost(tt, [n]), y ? np.array(y, { dtype: np.int32 }) : null));
    const vRaw = await velocity(state.params);
    const vEma = await velocity(state.ema);
    // PyTorch gets NCHW images.
    const inputs: Record<string, HostTensor> = {
      x: c.kind === "image" ? f32(nchw(x, n, 8, 8, 1), [n, 1, 8, 8]) : f32(x, [n, 2]),
      t: f32(tt, [n]),
    };
    if (y) inputs.y = { dtype: "I64", shape: [n], data: BigInt64Array.from(y, BigInt) };
    writeFileSync(join(pkg, "inputs.safetensors"), encodeSafetensors(inputs));
    python(
      `import model as M, torch
ins, _ = M.read_safetensors("inputs.safetensors")
x, t = torch.from_numpy(ins["x"]), torch.from_numpy(ins["t"])
y = torch.from_numpy(ins["y"]) if "y" in ins else None
out = {}
with torch.no_grad():
    for w in ("params", "ema"):
        v = M.load_package(".", weights=w)(x, t, y)
        out[w] = v.permute(0, 2, 3, 1).contiguous() if v.dim() == 4 else v
open("v.safetensors", "wb").write(M.encode_safetensors(out))`,
      pkg,
    );
    const v = decodeSafetensors(readFileSync(join(pkg, "v.safetensors"))).tensors;
    for (const [w, ours] of [
      ["params", vRaw],
      ["ema", vEma],
    ] as const) {
      const d = maxDiff(ours, v[w].data as Float32Array);
      t.diagnostic(`${c.name} ${w}: max |v_torch - v_flowmatch| = ${d.toExponential(2)}, max |v| = ${maxAbs(ours).toFixed(3)}`);
      assert.ok(maxAbs(ours) > 0.05, `${c.name}: velocity too small to compare`);
      assert.ok(d < 1e-5 * Math.max(1, maxAbs(ours)), `${c.name} ${w}: max |v_torch - v_flowmatch| = ${d}`);
    }
    assert.ok(maxDiff(vRaw, vEma) > 1e-3, "raw and EMA weights should differ in this test");
  }
});

function nchw(x: Float32Array, n: number, h: number, w: number, c: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < h * w; p++) for (let k = 0; k < c; k++) out[i * h * w * c + k * h * w + p] = x[i * h * w * c + p * c + k];
  return out;
}

test("export --format pytorch carries an image run's class-aware OT coupling and flips into config.json; a 2-D sinkhorn run is marked not continuable", () => {
  const root = tempDir("fm-torch-ot-");
  const data = colourFolder(root, { perClass: 2 });
  const run = join(root, "run");
  const tiny = [
    "--channels",
    "4,4",
    "--groups",
    "2",
    "--time-emb-dim",
    "4",
    "--batch-size",
    "4",
    "--per-class",
    "1",
    "--nfe",
    "1",
    "--solver",
    "euler",
  ];
  const trained = runCli([
    "train-image",
    "--dataset",
    `folder:${data}`,
    "--coupling",
    "ot",
    "--horizontal-flip",
    ...tiny,
    "--steps",
    "1",
    "--out",
    run,
  ]);
  assert.equal(trained.code, 0, trained.err);
  const pkg = join(root, "pkg");
  const exported = runCli(["export", "--format", "pytorch", "--ckpt", run, "--out", pkg]);
  assert.equal(exported.code, 0, exported.err);
  const cfg = JSON.parse(readFileSync(join(pkg, "config.json"), "utf8"));
  assert.deepEqual([cfg.training.coupling, cfg.training.horizontalFlip, cfg.notContinuable], ["ot", true, undefined]);

  const run2d = join(root, "run2d");
  const flags2d = ["--hidden", "8", "--depth", "1", "--batch-size", "16", "--n", "50", "--nfe", "4", "--frames", "2"];
  const sinkhorn = runCli([
    "train2d",
    "--dataset",
    "moons",
    "--coupling",
    "sinkhorn",
    "--reg",
    "0.1",
    ...flags2d,
    "--steps",
    "1",
    "--out",
    run2d,
  ]);
  assert.equal(sinkhorn.code, 0, sinkhorn.err);
  const pkg2d = join(root, "pkg2d");
  const exported2d = runCli(["export", "--format", "pytorch", "--ckpt", run2d, "--out", pkg2d]);
  assert.equal(exported2d.code, 0, exported2d.err);
  const cfg2d = JSON.parse(readFileSync(join(pkg2d, "config.json"), "utf8"));
  assert.match(cfg2d.notContinuable, /--coupling sinkhorn, which train\.py does not implement.*flowmatch train2d --resume/);
  if (noTorch || noScipy) return;
  // train.py runs the OT image steps (pairing and flips) and refuses the sinkhorn package in one line.
  const trainPy = (dir: string) =>
    spawnSync(PYTHON, [join(dir, "train.py"), "--steps", "3", "--out", join(root, `torch-${basename(dir)}`)], {
      encoding: "utf8",
      timeout: 120_000,
    });
  const py = trainPy(pkg);
  assert.equal(py.status, 0, py.stderr);
  assert.match(py.stdout, /trained 2 steps/);
  const refused = trainPy(pkg2d);
  assert.equal(refused.status, 1, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /^error: .*--coupling sinkhorn, which train\.py does not implement/);
});

test("train.py's class-aware OT pairs noise and images as flowmatch's otCoupleByClass does", { skip: noTorch || noScipy }, () => {
  const root = tempDir("fm-torch-otpy-");
  const rng = new Rng(4);
  const dim = 3;
  const labels = Int32Array.from([2, 0, 2, 1, 0, 2, 3, 0]);
  const n = labels.length;
  const x0 = rng.normals(n * dim);
  const x1 = rng.normals(n * dim).map((v) => 2 * v + 1);
  const ours = otCoupleByClass(x0, x1, dim, labels).x0;
  const pkg = join(root, "pkg");
  mkdirSync(pkg);
  for (const f of ["train.py", "model.py"]) writeFileSync(join(pkg, f), readFileSync(join(import.meta.dirname, "..", "..", "pytorch", f)));
  const i64 = (a: Int32Array): HostTensor => ({ dtype: "I64", shape: [a.length], data: BigInt64Array.from(a, (v) => BigInt(v)) });
  writeFileSync(join(pkg, "b.safetensors"), encodeSafetensors({ x0: f32(x0, [n, dim]), x1: f32(x1, [n, dim]), y: i64(labels) }));
  const out = python(
    `import train as T, model as M, json
b, _ = M.read_safetensors("b.safetensors")
print(json.dumps(T.ot_couple_by_class(b["x0"], b["x1"], b["y"]).ravel().tolist()))`,
    pkg,
  );
  assert.deepEqual(JSON.parse(out), Array.from(ours));
});

test("train.py's step is flowmatch's step: same loss, clipped Adam update with the exported m/v/step, and EMA (cosine path)", {
  skip: noTorch,
}, async (t) => {
  await initEngine();
  const root = tempDir("fm-torch-step-");
  const cfg: MlpConfig = { dim: 2, hidden: 32, depth: 2, timeEmbDim: 16 };
  const ckpt = join(root, "ckpt");
  await writeCheckpoint(ckpt, "2d", cfg, initMlp(cfg, new Rng(5)), { dataset: "moons", path: "cosine" });
  const pkg = join(root, "pkg");
  await exportPytorch({ ckpt, out: pkg, dataSize: 100 });
  const { tensors } = await loadCheckpoint(ckpt);
  const state = tensorsToState(tensors, ckpt);
  const n = 16;
  const rng = new Rng(21);
  const x0 = rng.normals(2 * n);
  const x1 = rng.normals(2 * n).map((v) => 3 * v);
  const tt = rng.uniforms(n);
  const trainer = new FlowTrainer({
    model: mlpModel(cfg),
    params: state.params,
    sampleShape: [2],
    adam: { ...DEFAULT_ADAM, lr: 2e-3 },
    emaDecay: 0.99,
    resume: { ema: state.ema, m: state.m as HostParams, v: state.v as HostParams, step: 7, skipped: 1 },
  });
  const loss = await trainer.step({ x0, x1, t: tt, coef: pathCoefficients(getScheduler("cosine"), tt) });
  assert.ok(
    trainer.lastStep?.applied && (trainer.lastStep.gradNorm ?? 0) > 1,
    `the gradient should be clipped here (norm ${trainer.lastStep?.gradNorm})`,
  );
  const ours = await trainer.hostState();
  trainer.dispose();
  writeFileSync(join(pkg, "batch.safetensors"), encodeSafetensors({ x0: f32(x0, [n, 2]), x1: f32(x1, [n, 2]), t: f32(tt, [n]) }));
  python(
    `import train as T, model as M, torch
b, _ = M.read_safetensors("batch.safetensors")
cfg, net, names, params, ema, m, v, losses, skipped = T.load_run(".")
x0, x1, t = (torch.from_numpy(b[k]) for k in ("x0", "x1", "t"))
loss = T.cfm_loss(net, x0, x1, t, None, T.coefficient_tensors(cfg["training"]["path"], b["t"].astype("float64"), 2))
loss.backward()
T.apply_update(params, m, v, ema, cfg["step"] + 1 - len(skipped), cfg["training"]["lr"], cfg["training"], float(T.grad_norm(params)))
out = {"loss": loss.detach().reshape(1)}
for prefix, group in (("", params), ("ema.", ema), ("opt.m.", m), ("opt.v.", v)):
    out.update({prefix + k: g for k, g in zip(names, group)})
open("after.safetensors", "wb").write(M.encode_safetensors(out))`,
    pkg,
  );
  const theirs = decodeSafetensors(readFileSync(join(pkg, "after.safetensors"))).tensors;
  const lossTorch = (theirs.loss.data as Float32Array)[0];
  t.diagnostic(`loss flowmatch ${loss} PyTorch ${lossTorch}`);
  assert.ok(Math.abs(loss - lossTorch) < 1e-5 * loss, `loss ${loss} vs ${lossTorch}`);
  for (const [prefix, group] of [
    ["", ours.params],
    ["ema.", ours.ema],
    ["opt.m.", ours.m],
    ["opt.v.", ours.v],
  ] as const) {
    const torchLayout = paramsToTorch("mlp", group);
    for (const name of Object.keys(mlpParamShapes(cfg))) {
      const a = torchLayout[name].data;
      const d = maxDiff(a, theirs[prefix + name].data as Float32Array);
      assert.ok(d <= 1e-6 * Math.max(1, maxAbs(a)), `${prefix}${name}: max diff ${d} (max |value| ${maxAbs(a)})`);
    }
  }
  // The update moved the weights (else the comparison above would prove nothing about Adam).
  assert.ok(maxDiff(ours.params["layers.0.weight"].data, state.params["layers.0.weight"].data) > 1e-4);
});

/** Straight-path CFM loss of a 2-D checkpoint's raw weights on one fixed batch of moons (the same for every call). */
async function fixedBatchLoss(dir: string): Promise<number> {
  await initEngine();
  const loaded = await loadModel(dir, { kind: "2d" });
  const n = 8192;
  const rng = new Rng(99);
  const x1 = sampleToy("moons", n, rng);
  const x0 = rng.normals(2 * n);
  const tt = rng.uniforms(n);
  const col = (f: (t: number) => number) => fromHost(Float32Array.from(tt, f), [n, 1]);
  const loss = cfmLoss(
    mlpModel(loaded.model),
    toEngine(loaded.params),
    fromHost(x0, [n, 2]),
    fromHost(x1, [n, 2]),
    fromHost(tt, [n]),
    col((t) => t),
    col((t) => 1 - t),
    col(() => 1),
    col(() => -1),
    null,
  );
  return (await toHost(loss))[0];
}

test("torchrun --nproc_per_node 2 (gloo, CPU) continues an exported 2-D run's loss curve; its checkpoint imports back, samples and resumes in flowmatch", {
  skip: noTorch,
}, async (t) => {
  const root = tempDir("fm-torch-ddp-");
  const run = join(root, "run");
  const small = [
    "--dataset",
    "moons",
    "--hidden",
    "32",
    "--depth",
    "2",
    "--batch-size",
    "128",
    "--n",
    "200",
    "--nfe",
    "8",
    "--frames",
    "2",
    "--seed",
    "4",
  ];
  const trained = runCli(["train2d", ...small, "--steps", "300", "--out", run]);
  assert.equal(trained.code, 0, trained.err);
  const pkg = join(root, "pkg");
  const exported = runCli(["export", "--format", "pytorch", "--ckpt", run, "--out", pkg, "--data-size", "20000"]);
  assert.equal(exported.code, 0, exported.err);
  assert.match(exported.out, /torchrun --nproc_per_node 2 train\.py/);
  // Debian's torch 1.13 on Python 3.11 fails to parse torchrun's default --redirects/--tee ("0"); 1 works everywhere.
  const ddp = spawnSync(
    PYTHON,
    [
      "-m",
      "torch.distributed.run",
      "--redirects",
      "1",
      "--tee",
      "1",
      "--standalone",
      "--nproc_per_node",
      "2",
      "train.py",
      "--steps",
      "500",
      "--out",
      join(root, "torch"),
      "--log-every",
      "50",
    ],
    {
      cwd: pkg,
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, OMP_NUM_THREADS: "1" },
    },
  );
  assert.equal(ddp.status, 0, `torchrun failed:\n${ddp.stdout}\n${ddp.stderr}`);
  assert.match(ddp.stdout, /on 2 process\(es\), cpu, global batch 128/);
  const back = join(root, "back");
  const imported = runCli(["import", "--from", "pytorch", join(root, "torch"), "--out", back]);
  assert.equal(imported.code, 0, imported.err);
  assert.match(imported.out, /at step 500/);

  const losses = (dir: string) =>
    Array.from(decodeSafetensors(readFileSync(join(dir, "ckpt.safetensors"))).tensors["log.loss"].data as Float32Array);
  const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
  const before = losses(run);
  const all = losses(back);
  assert.equal(all.length, 500);
  assert.deepEqual(all.slice(0, 300), before, "flowmatch's loss history is kept");
  const start = mean(before.slice(0, 30));
  const atExport = mean(before.slice(270, 300));
  const continued = mean(all.slice(300, 330));
  const lossAt300 = await fixedBatchLoss(run);
  const lossAt500 = await fixedBatchLoss(back);
  t.diagnostic(
    `batch loss: first 30 steps ${start.toFixed(3)}, last 30 in flowmatch ${atExport.toFixed(3)}, first 30 in PyTorch ${continued.toFixed(3)}; fixed-batch loss at step 300 ${lossAt300.toFixed(4)}, at 500 ${lossAt500.toFixed(4)}`,
  );
  // Continued, not restarted: PyTorch's first losses are near the loss at export, not where training began ...
  assert.ok(atExport < start - 0.2, `the flowmatch run should have learned: ${start} -> ${atExport}`);
  assert.ok(
    Math.abs(continued - atExport) < 0.3 * (start - atExport),
    `PyTorch's first losses ${continued} are not near the loss at export ${atExport} (start ${start})`,
  );
  // ... and keep going down.
  assert.ok(lossAt500 < lossAt300, `loss on a fixed batch rose from ${lossAt300} (step 300) to ${lossAt500} (step 500)`);
  const config = JSON.parse(readFileSync(join(back, "ckpt.json"), "utf8")) as {
    step: number;
    segments: { from: number; to: number; train: Record<string, unknown> }[];
  };
  assert.deepEqual(
    config.segments.map((s) => [s.from, s.to, s.train.processes ?? null]),
    [
      [0, 300, null],
      [300, 500, 2],
    ],
  );

  const sampled = runCli(["sample2d", "--ckpt", back, "--n", "200", "--nfe", "8", "--frames", "2"]);
  assert.equal(sampled.code, 0, sampled.err);
  assert.match(sampled.out, /NFE 8/);
  // The Adam state came back too: flowmatch resumes the run where PyTorch left it.
  const resumed = runCli(["train2d", ...small, "--steps", "510", "--out", back, "--resume"]);
  assert.equal(resumed.code, 0, resumed.err);
  assert.match(resumed.out, /trained 10 steps/);
});

test("an image run continues in train.py (NCHW data, labels, label dropout) and comes back: it samples and resumes in flowmatch", {
  skip: noTorch,
}, () => {
  const root = tempDir("fm-torch-img-");
  const bars = join(root, "bars");
  writeBars(bars, 32);
  const flags = [
    "--dataset",
    `idx:${bars}`,
    "--batch-size",
    "8",
    "--channels",
    "8,16",
    "--groups",
    "4",
    "--time-emb-dim",
    "16",
    "--per-class",
    "1",
    "--nfe",
    "2",
  ];
  const run = join(root, "run");
  const trained = runCli(["train-image", ...flags, "--steps", "10", "--out", run]);
  assert.equal(trained.code, 0, trained.err);
  const pkg = join(root, "pkg");
  const exported = runCli(["export", "--format", "pytorch", "--ckpt", run, "--out", pkg]);
  assert.equal(exported.code, 0, exported.err);
  const data = decodeSafetensors(readFileSync(join(pkg, "data.safetensors"))).tensors;
  assert.deepEqual([data.x.shape, data.y.shape, data.y.dtype], [[32, 1, 8, 8], [32], "I64"]);
  const py = spawnSync(PYTHON, [join(pkg, "train.py"), "--steps", "20", "--out", join(root, "torch"), "--log-every", "5"], {
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.equal(py.status, 0, py.stderr);
  assert.match(py.stdout, /continuing unet from step 10 .* global batch 8/);
  const back = join(root, "back");
  const imported = runCli(["import", "--from", "pytorch", join(root, "torch"), "--out", back]);
  assert.equal(imported.code, 0, imported.err);
  const losses = decodeSafetensors(readFileSync(join(back, "ckpt.safetensors"))).tensors["log.loss"].data as Float32Array;
  assert.equal(losses.length, 20);
  assert.ok(losses.every(Number.isFinite));
  const sampled = runCli(["sample-image", "--ckpt", back, "--per-class", "1", "--nfe", "2"]);
  assert.equal(sampled.code, 0, sampled.err);
  assert.match(sampled.out, /sampled 4 images with heun NFE 2/);
  const resumed = runCli(["train-image", ...flags, "--steps", "22", "--out", back, "--resume"]);
  assert.equal(resumed.code, 0, resumed.err);
});

test("train.py follows the run's learning-rate schedule: config.json carries it and lr_at is flowmatch's lrAt", {
  skip: noTorch,
}, async () => {
  const root = tempDir("fm-torch-lr-");
  const cfg: MlpConfig = { dim: 2, hidden: 8, depth: 1, timeEmbDim: 4 };
  const ckpt = join(root, "ckpt");
  const train = { steps: 7, batchSize: 16, lr: 2e-3, lrSchedule: "cosine", warmup: 3, seed: 3, path: "straight" };
  await writeCheckpoint(ckpt, "2d", cfg, initMlp(cfg, new Rng(5)), {
    dataset: "moons",
    path: "straight",
    train: { ...train, timeSampler: "uniform", emaDecay: 0.99, coupling: "independent", dataset: "moons" },
  });
  const pkg = join(root, "pkg");
  await exportPytorch({ ckpt, out: pkg, dataSize: 10 });
  const exported = JSON.parse(readFileSync(join(pkg, "config.json"), "utf8")).training;
  assert.deepEqual([exported.lrSchedule, exported.warmup], ["cosine", 3]);
  // A continuation to 20 steps: warm-up, then the cosine from the peak towards zero at step 20.
  const steps = 20;
  const out = python(
    `import json, train as T
tr = json.load(open("config.json"))["training"]
print(json.dumps([T.lr_at(tr, 2e-3, ${steps}, d) for d in range(${steps})]))`,
    pkg,
  );
  const theirs = JSON.parse(out.trim().split("\n").pop() ?? "[]") as number[];
  const ours = Array.from({ length: steps }, (_, d) => lrAt({ kind: "cosine", lr: 2e-3, warmup: 3, steps }, d));
  assert.equal(theirs.length, steps);
  for (let d = 0; d < steps; d++)
    assert.ok(Math.abs(theirs[d] - ours[d]) < 1e-12, `step ${d}: train.py ${theirs[d]}, flowmatch ${ours[d]}`);
  assert.ok(
    ours[2] === 2e-3 && ours[10] < 2e-3 && ours[1] < ours[2],
    "the schedule warms up and decays (else the comparison proves little)",
  );
});
