// PyTorch export/import as a user meets it: nothing is replaced unasked, and a corrupted or mismatched
// state dict is refused with one line naming the file, the tensor and the fix, leaving no checkpoint.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decodeSafetensors, encodeSafetensors, type HostTensor } from "../../src/io/safetensors.js";
import { UserError } from "../../src/core/errors.js";
import { importPytorch } from "../../src/pipelines/pytorch.js";
import { assertTreeKept, interruptWhenReady, runCli, snapshotTree, tempDir } from "../helpers/cli.js";

const PYTHON = process.env.FLOWMATCH_PYTHON ?? "/usr/bin/python3";
const probe = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
const noTorch: string | false =
  probe.status === 0 ? false : `PyTorch not available: ${PYTHON} -c "import torch" failed; install python3-torch`;

let root = "";
let run = "";
let pkg = "";

before(() => {
  root = tempDir("fm-torch-rob-");
  run = join(root, "run");
  const trained = runCli([
    "train2d",
    "--dataset",
    "moons",
    "--steps",
    "20",
    "--hidden",
    "16",
    "--depth",
    "2",
    "--batch-size",
    "32",
    "--n",
    "100",
    "--nfe",
    "4",
    "--frames",
    "2",
    "--out",
    run,
  ]);
  assert.equal(trained.code, 0, trained.err);
  pkg = join(root, "pkg");
  const exported = runCli(["export", "--format", "pytorch", "--ckpt", run, "--out", pkg, "--data-size", "1000"]);
  assert.equal(exported.code, 0, exported.err);
});

const weights = (dir: string, file = "weights.safetensors") => decodeSafetensors(readFileSync(join(dir, file))).tensors;

/** The package's raw weights as a bare state dict, edited by `edit`. */
function stateDict(name: string, edit: (t: Record<string, HostTensor>) => void): string {
  const all = weights(pkg);
  const sd: Record<string, HostTensor> = {};
  for (const [k, t] of Object.entries(all)) if (!/^(ema|opt|log)\./.test(k)) sd[k] = t;
  edit(sd);
  const file = join(root, name);
  writeFileSync(file, encodeSafetensors(sd));
  return file;
}

function assertOneLineError(r: { code: number | null; err: string }, pattern: RegExp): void {
  assert.equal(r.code, 1, r.err);
  const lines = r.err.trim().split("\n");
  assert.equal(lines.length, 1, `expected one line, got:\n${r.err}`);
  assert.match(lines[0], pattern);
}

test("export --format pytorch refuses to replace a package without --force (everything kept), replaces it with --force, and needs --out", () => {
  const before = snapshotTree(pkg);
  const again = runCli(["export", "--format", "pytorch", "--ckpt", run, "--out", pkg]);
  assertOneLineError(
    again,
    /already holds config\.json, weights\.safetensors, data\.safetensors, model\.py, train\.py; pass another --out, or --force/,
  );
  assertTreeKept(before, pkg);
  const copy = join(root, "pkg-copy");
  cpSync(pkg, copy, { recursive: true });
  const forced = runCli(["export", "--format", "pytorch", "--ckpt", run, "--out", copy, "--force", "--data-size", "500"]);
  assert.equal(forced.code, 0, forced.err);
  assert.deepEqual(weights(copy, "data.safetensors").x.shape, [500, 2]);
  assertOneLineError(runCli(["export", "--format", "pytorch", "--ckpt", run]), /--format pytorch writes a folder: pass --out <dir>/);
  assert.equal(runCli(["export", "--ckpt", run]).code, 2, "export without --onnx or --format pytorch is a missing flag");
});

test("import refuses a truncated weights file, naming it, and writes no checkpoint", () => {
  const bad = join(root, "truncated");
  cpSync(pkg, bad, { recursive: true });
  const file = join(bad, "weights.safetensors");
  truncateSync(file, readFileSync(file).length - 100);
  const out = join(root, "from-truncated");
  assertOneLineError(
    runCli(["import", "--from", "pytorch", bad, "--out", out]),
    /truncated\/weights\.safetensors is corrupt: .*; write it again/,
  );
  assert.equal(existsSync(join(out, "ckpt.json")), false);
});

test("import refuses a mismatched state dict, naming the tensor, its shape and the fix", async () => {
  const cases: [string, (t: Record<string, HostTensor>) => void, RegExp][] = [
    [
      "wrong-shape",
      (t) => (t["layers.1.weight"] = { dtype: "F32", shape: [8, 16], data: new Float32Array(128) }),
      /tensor "layers\.1\.weight" is \[8, 16\] but the model needs \[16, 16\]; pass the state dict of the model in .*, or --config with the architecture/,
    ],
    [
      "nan",
      (t) => ((t["layers.0.bias"].data as Float32Array)[5] = NaN),
      /tensor layers\.0\.bias\[5\] = NaN is not finite; the weights are corrupt or training diverged/,
    ],
    ["missing", (t) => delete t["layers.2.bias"], /tensor "layers\.2\.bias" is missing \(the model needs \[2\]\)/],
    [
      "extra",
      (t) => (t["layers.3.weight"] = { dtype: "F32", shape: [2, 2], data: new Float32Array(4) }),
      /tensor "layers\.3\.weight" \[2, 2\] is not a parameter of this model/,
    ],
    [
      "f64",
      (t) => (t["layers.0.bias"] = { dtype: "F64", shape: [16], data: new Float64Array(16) }),
      /tensor "layers\.0\.bias" is F64; flowmatch models are float32: save the state dict with \.float\(\)/,
    ],
  ];
  for (const [i, [name, edit, pattern]] of cases.entries()) {
    const file = stateDict(`${name}.safetensors`, edit);
    const out = join(root, `from-${name}`);
    if (i < 2) {
      // As a user meets it: exit 1, one line, no checkpoint.
      assertOneLineError(runCli(["import", "--from", "pytorch", file, "--config", pkg, "--out", out]), pattern);
    } else {
      // The same refusal, without a process per case (the CLI prints the message as it is).
      await assert.rejects(
        importPytorch({ from: file, config: pkg, out }),
        (err: unknown) => err instanceof UserError && !err.message.includes("\n") && pattern.test(err.message),
      );
    }
    assert.equal(existsSync(join(out, "ckpt.json")), false, `${name}: a checkpoint was written`);
  }
});

test("import takes a user's own state dict (DistributedDataParallel 'module.' names) with --config, and asks for --config without one", () => {
  const file = stateDict("ddp.safetensors", (t) => {
    for (const k of Object.keys(t)) {
      t[`module.${k}`] = t[k];
      delete t[k];
    }
  });
  assertOneLineError(
    runCli(["import", "--from", "pytorch", file, "--out", join(root, "no-config")]),
    /is a bare state dict: pass --config with the package/,
  );
  const out = join(root, "from-ddp");
  const r = runCli(["import", "--from", "pytorch", file, "--config", pkg, "--out", out]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /weights only/);
  // New weights for the architecture, not a continuation of the package's run.
  const cfg = (dir: string) =>
    JSON.parse(readFileSync(join(dir, "ckpt.json"), "utf8")) as { step: number; runId: string; segments?: unknown };
  assert.equal(cfg(out).step, 0);
  assert.notEqual(cfg(out).runId, cfg(run).runId);
  assert.equal(cfg(out).segments, undefined);
  // Back in flowmatch's layout, bit for bit the weights the package was exported from.
  const original = weights(run, "ckpt.safetensors");
  const imported = weights(out, "ckpt.safetensors");
  for (const k of ["layers.0.weight", "layers.1.weight", "layers.2.bias"]) assert.deepEqual(imported[k], original[k], k);
  const s = runCli(["sample2d", "--ckpt", out, "--n", "100", "--nfe", "4", "--frames", "2"]);
  assert.equal(s.code, 0, s.err);
});

test("import refuses to replace a flowmatch checkpoint without --force; everything kept", () => {
  const before = snapshotTree(run);
  assertOneLineError(
    runCli(["import", "--from", "pytorch", pkg, "--out", run]),
    /already holds ckpt\.json, ckpt\.safetensors; pass another --out, or --force/,
  );
  assertTreeKept(before, run);
});

test("a .pt state dict needs python3 with torch: without it, one line saying so", () => {
  const file = join(root, "state.pt");
  writeFileSync(file, "not read");
  const r = runCli(["import", "--from", "pytorch", file, "--config", pkg, "--out", join(root, "from-pt-none")], {
    env: { ...process.env, FLOWMATCH_PYTHON: join(root, "no-such-python") },
  });
  assertOneLineError(
    r,
    /reading a \.pt file needs .*no-such-python with torch .*install python3-torch, or save the state dict as \.safetensors/,
  );
});

test("a .pt state dict (torch.save) imports through python3 with torch", { skip: noTorch }, () => {
  const file = join(root, "user.pt");
  const py = spawnSync(
    PYTHON,
    [
      "-c",
      `import sys; sys.path.insert(0, ${JSON.stringify(pkg)}); import model as M, torch
net = M.load_package(${JSON.stringify(pkg)}, weights="params")
torch.save({"model": net.state_dict(), "epoch": 3}, ${JSON.stringify(file)})`,
    ],
    { encoding: "utf8" },
  );
  assert.equal(py.status, 0, py.stderr);
  const out = join(root, "from-pt");
  const r = runCli(["import", "--from", "pytorch", file, "--config", pkg, "--out", out], {
    env: { ...process.env, FLOWMATCH_PYTHON: PYTHON },
  });
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(weights(out, "ckpt.safetensors")["layers.1.weight"], weights(run, "ckpt.safetensors")["layers.1.weight"]);
});

test("train.py refuses an --out holding a checkpoint without --resume, and --resume where there is none; nothing changed", {
  skip: noTorch,
}, () => {
  const before = snapshotTree(pkg);
  const py = (args: string[]) => spawnSync(PYTHON, [join(pkg, "train.py"), ...args], { encoding: "utf8" });
  const r1 = py(["--steps", "25", "--out", pkg]);
  assert.equal(r1.status, 1, r1.stderr);
  assert.match(
    r1.stderr.trim(),
    /^error: .*pkg already holds a checkpoint \(config\.json, weights\.safetensors\); pass --resume to continue it or --force to replace it$/,
  );
  const r2 = py(["--steps", "25", "--out", join(root, "empty"), "--resume"]);
  assert.equal(r2.status, 1, r2.stderr);
  assert.match(r2.stderr.trim(), /^error: --resume: .*empty holds no checkpoint/);
  const r3 = py(["--steps", "25", "--out", join(root, "odd"), "--batch-size", "0"]);
  assert.equal(r3.status, 1);
  assert.match(r3.stderr.trim(), /^error: --batch-size must be a positive integer, got 0$/);
  assertTreeKept(before, pkg);
});

test("Ctrl-C stops train.py after the step it is in: it saves, exits 130, and --resume continues from there", {
  skip: noTorch,
}, async () => {
  const out = join(root, "interrupted");
  const child = spawn(PYTHON, [join(pkg, "train.py"), "--steps", "1000000", "--out", out, "--log-every", "20"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  // Interrupt once training is under way (the first progress line).
  const { code, out: stdout, err: stderr } = await interruptWhenReady(child, /step \d+\/1000000/, "stdout");
  assert.equal(code, 130, `${stdout}\n${stderr}`);
  const stoppedAt = Number(/stopped early at step (\d+); continue with --resume/.exec(stdout)?.[1]);
  assert.ok(stoppedAt > 20, stdout);
  const saved = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as { step: number };
  assert.equal(saved.step, stoppedAt);
  const resumed = spawnSync(PYTHON, [join(pkg, "train.py"), "--steps", String(stoppedAt + 5), "--out", out, "--resume"], {
    encoding: "utf8",
  });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, new RegExp(`continuing mlp from step ${stoppedAt} `));
  assert.match(resumed.stdout, /trained 5 steps/);
});
