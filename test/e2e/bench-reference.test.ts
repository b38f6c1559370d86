// The benchmark's PyTorch reference (bench/torch_reference.py) is a faithful replica of flowmatch's
// models: same parameter names and count, same velocity and CFM loss for the same weights and
// inputs. And the benchmark prints only ratios measured in its own run: with PyTorch it is the
// quotient of the two measured medians, without it "reference not available". No timings are
// asserted. The replica checks need `/usr/bin/python3` with torch (Debian python3-torch) and are
// skipped, with the reason, where it is missing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { initEngine, np, fromHost, toHost, type Array } from "../../src/engine/index.js";
import { Rng } from "../../src/core/rng.js";
import { cfmLoss, toEngine } from "../../src/core/train.js";
import type { VelocityModel } from "../../src/core/models/family.js";
import { getScheduler, pathCoefficients } from "../../src/core/paths.js";
import { DEFAULT_MLP, initMlp, mlpModel } from "../../src/core/models/mlp.js";
import { initUnetParams, unetModel, type UnetConfig } from "../../src/core/models/unet.js";
import type { HostParams } from "../../src/core/optim.js";
import { encodeSafetensors, type HostTensor } from "../../src/io/safetensors.js";
import { paramTensors, WORKLOADS } from "../../bench/workloads.js";
import { tempDir } from "../helpers/cli.js";

const ROOT = join(import.meta.dirname, "..", "..");
const PYTHON = process.env.FLOWMATCH_BENCH_PYTHON ?? "/usr/bin/python3";
const probe = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
const noTorch: string | false =
  probe.status === 0
    ? false
    : `PyTorch reference not available: ${PYTHON} -c "import torch" failed (${(probe.error?.message ?? probe.stderr.trim().split("\n").pop()) || `exit ${probe.status}`}); install python3-torch`;

interface CheckResult {
  paramCount: number;
  maxAbsDiff: number;
  maxAbs: number;
  loss: number;
  lossFlowmatch: number;
}

/** flowmatch's velocity and straight-path CFM loss for the given weights and inputs, checked by the replica. */
async function checkReplica(
  kind: "mlp" | "unet",
  cfg: object,
  model: VelocityModel,
  params: HostParams,
  sample: number[],
  n: number,
  labels: Int32Array | null,
): Promise<CheckResult> {
  await initEngine();
  const rng = new Rng(7);
  const per = sample.reduce((a, b) => a * b, 1);
  const x = rng.normals(n * per);
  const t = rng.uniforms(n);
  const x0 = rng.normals(n * per);
  const x1 = rng.normals(n * per);
  const y = () => (labels ? np.array(labels, { dtype: np.int32 }) : null);
  const v = await toHost(model.apply(toEngine(params), fromHost(x, [n, ...sample]), fromHost(t, [n]), y()));
  const coef = pathCoefficients(getScheduler("straight"), t);
  const column = (j: number): Array =>
    fromHost(
      Float32Array.from({ length: n }, (_, i) => coef[4 * i + j]),
      [n, ...sample.map(() => 1)],
    );
  const loss = await toHost(
    cfmLoss(
      model,
      toEngine(params),
      fromHost(x0, [n, ...sample]),
      fromHost(x1, [n, ...sample]),
      fromHost(t, [n]),
      column(0),
      column(1),
      column(2),
      column(3),
      y(),
    ),
  );
  const f32 = (data: Float32Array, shape: number[]): HostTensor => ({ dtype: "F32", shape, data });
  const tensors: Record<string, HostTensor> = {
    ...paramTensors(params, "param."),
    x: f32(x, [n, ...sample]),
    t: f32(t, [n]),
    v: f32(v, [n, ...sample]),
    x0: f32(x0, [n, ...sample]),
    x1: f32(x1, [n, ...sample]),
    loss: f32(loss, [1]),
  };
  if (labels) tensors.y = { dtype: "I32", shape: [n], data: labels };
  const file = join(tempDir("fm-bench-ref-"), "check.safetensors");
  writeFileSync(file, encodeSafetensors(tensors, { kind, config: JSON.stringify(cfg) }));
  const r = spawnSync(PYTHON, [join(ROOT, "bench", "torch_reference.py"), "check", file], { encoding: "utf8", timeout: 300_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as CheckResult;
}

const count = (p: HostParams) => Object.values(p).reduce((s, a) => s + a.data.length, 0);

test("PyTorch MLP replica: same parameter count, velocity and CFM loss as flowmatch's 2-D MLP", { skip: noTorch }, async (t) => {
  for (const cfg of [DEFAULT_MLP, { ...DEFAULT_MLP, hidden: 64, timeEmbDim: 0, fourierFeatures: 0 }]) {
    const rng = new Rng(3);
    const params = initMlp(cfg, rng);
    // The default init's velocities are small (max ~0.04 with Fourier features); perturb every weight so a mismatch shows.
    for (const p of Object.values(params)) for (let i = 0; i < p.data.length; i++) p.data[i] += 0.05 * rng.normal();
    const r = await checkReplica("mlp", cfg, mlpModel(cfg), params, [2], 64, null);
    t.diagnostic(`MLP timeEmbDim ${cfg.timeEmbDim}: ${JSON.stringify(r)}`);
    assert.equal(r.paramCount, count(params));
    assert.ok(r.maxAbs > 0.05, `velocity too small to compare: ${r.maxAbs}`);
    assert.ok(r.maxAbsDiff < 1e-5, `timeEmbDim ${cfg.timeEmbDim}: max |v_torch - v_flowmatch| = ${r.maxAbsDiff}`);
    assert.ok(Math.abs(r.loss - r.lossFlowmatch) < 1e-5 * r.lossFlowmatch, `loss ${r.loss} vs ${r.lossFlowmatch}`);
  }
});

test("PyTorch UNet replica: same parameter count, velocity and CFM loss as flowmatch's UNet (recipe and default widths, res blocks and attention)", {
  skip: noTorch,
}, async (t) => {
  const base = { numClasses: 10, timeEmbDim: 64, groups: 8, inChannels: 1, height: 28, width: 28 };
  for (const cfg of [
    { ...base, channels: [16, 32, 32] },
    { ...base, channels: [32, 64, 64] },
    { ...base, channels: [16, 32, 32], resBlocks: 2, attention: [14, 7], attentionHeads: 2 },
  ] as UnetConfig[]) {
    const channels = `${cfg.channels}${cfg.attention ? " with 2 res blocks and attention" : ""}`;
    const rng = new Rng(5);
    const params = initUnetParams(cfg, rng);
    // Zero-initialised convs would make v = 0 whatever the replica does; perturb every weight.
    for (const p of Object.values(params)) for (let i = 0; i < p.data.length; i++) p.data[i] += 0.05 * rng.normal();
    const labels = Int32Array.of(0, 3, 10); // 10 = the null class
    const r = await checkReplica("unet", cfg, unetModel(cfg), params, [28, 28, 1], labels.length, labels);
    t.diagnostic(`UNet [${channels}]: ${JSON.stringify(r)}`);
    assert.equal(r.paramCount, count(params));
    assert.ok(r.maxAbs > 0.05, `velocity too small to compare: ${r.maxAbs}`);
    assert.ok(
      r.maxAbsDiff < 1e-5 * Math.max(1, r.maxAbs),
      `[${channels}]: max |v_torch - v_flowmatch| = ${r.maxAbsDiff} (max |v| ${r.maxAbs})`,
    );
    assert.ok(Math.abs(r.loss - r.lossFlowmatch) < 1e-5 * r.lossFlowmatch, `loss ${r.loss} vs ${r.lossFlowmatch}`);
  }
});

interface BenchJson {
  torch: { version: string | null };
  busyLoop: boolean;
  load: { start: string; end: string };
  results: {
    id: string;
    params: number;
    ratios: Record<string, number | null>;
    torch: { medianSeconds: number; blocks: number[]; params: number; maxRssKiB: number } | null;
    flowmatch: {
      backend: string;
      medianSeconds: number;
      blocks: number[];
      maxRssKiB: number;
      threads: string;
      iterations: number;
      rssAt: { step: number; kib: number }[];
    }[];
    errors: string[];
  }[];
}

function runBench(args: string[]): { code: number | null; out: string; err: string; json: BenchJson } {
  const outDir = tempDir("fm-bench-out-");
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      join(ROOT, "bench", "run.ts"),
      "--only",
      "mlp-default",
      "--quick",
      "--rounds",
      "1",
      "--block-seconds",
      "0.2",
      "--out",
      outDir,
      ...args,
    ],
    {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 300_000,
    },
  );
  const files = readdirSync(outDir).filter((f) => f.endsWith(".json"));
  assert.equal(files.length, 1, `one JSON result expected in ${outDir}: ${r.stdout}\n${r.stderr}`);
  return { code: r.status, out: r.stdout, err: r.stderr, json: JSON.parse(readFileSync(join(outDir, files[0]), "utf8")) as BenchJson };
}

test("bench without PyTorch says 'reference not available' and prints no ratio", () => {
  const r = runBench(["--python", join(tempDir(), "no-such-python")]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /reference not available/);
  assert.doesNotMatch(r.out, /\d+(\.\d+)?x\b/, "a ratio was printed without a reference");
  const [res] = r.json.results;
  assert.equal(r.json.torch.version, null);
  assert.equal(res.torch, null);
  assert.equal(res.ratios.jax, null);
  assert.ok(res.flowmatch[0].medianSeconds > 0 && res.flowmatch[0].maxRssKiB > 0);
  assert.match(r.json.load.start, /^\d/);
});

test("bench with PyTorch: the ratio is flowmatch's measured median over PyTorch's from the same run", { skip: noTorch }, () => {
  const r = runBench([]);
  assert.equal(r.code, 0, r.err);
  const [res] = r.json.results;
  assert.deepEqual(res.errors, []);
  const fm = res.flowmatch[0];
  assert.ok(res.torch, "PyTorch side missing");
  assert.equal(res.torch.params, res.params);
  assert.equal(res.torch.blocks.length, 1);
  assert.equal(fm.blocks.length, 1);
  assert.equal(res.ratios.jax, fm.medianSeconds / res.torch.medianSeconds);
  assert.ok(res.torch.maxRssKiB > 0);
  const title = WORKLOADS.find((w) => w.id === "mlp-default")?.title as string;
  const row = r.out.split("\n").find((l) => l.startsWith(`| ${title}`)) as string;
  assert.ok(row.includes(`| ${(res.ratios.jax as number).toFixed(2)} |`), row);
  assert.match(r.out, /threads: flowmatch .*; PyTorch 1/);
});

test("bench long run (rss-2d) reports RSS at start, middle and end; --busy-loop runs one busy loop and stops it", () => {
  const r = runBench(["--only", "rss-2d", "--steps", "40", "--busy-loop", "--python", join(tempDir(), "no-such-python")]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.json.busyLoop, true);
  const pid = Number(/busy-loop process \(pid (\d+)/.exec(r.out)?.[1]);
  assert.ok(pid > 0, r.out);
  assert.throws(() => process.kill(pid, 0), "the busy loop outlived the benchmark");
  const [fm] = r.json.results[0].flowmatch;
  assert.equal(fm.backend, "ort");
  assert.equal(fm.iterations, 40);
  // 20 chunks of 2 steps: RSS after the first, the 10th and the last.
  assert.deepEqual(
    fm.rssAt.map((a) => a.step),
    [2, 20, 40],
  );
  assert.ok(fm.rssAt.every((a) => a.kib > 0));
  assert.match(r.out, /RSS over a long run .*MiB at step 2, .*MiB at step 20, .*MiB at step 40/);
});
