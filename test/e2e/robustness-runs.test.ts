// Training runs as a careless user meets them: re-running into a folder with a checkpoint, resuming
// with other flags, a half-written save, a killed save's temp files, NaN weights, a tampered reflow
// pairs cache, and export over its own input. Each case checks the exit code, the message, and that
// every file the user had is still there byte for byte.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli, tempDir, snapshotTree, assertTreeKept } from "../helpers/cli.js";
import { levelFolder } from "../helpers/colour.js";
import { decodeSafetensors, encodeSafetensors } from "../../src/io/safetensors.js";
import { loadCheckpoint, saveCheckpoint } from "../../src/io/checkpoint.js";
import { TRAIN2D_DEFAULTS } from "../../src/pipelines/toy2d.js";

const TINY = ["--hidden", "16", "--depth", "1", "--batch-size", "32", "--n", "200", "--nfe", "8", "--frames", "3"];

function train2d(dir: string, steps: number, ...extra: string[]) {
  return runCli(["train2d", "--dataset", "moons", "--steps", String(steps), "--out", dir, ...TINY, ...extra]);
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
}

test("train2d refuses to replace a checkpoint without --resume or --force", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 20).code, 0);
    writeFileSync(join(dir, "notes.txt"), "my notes");
    const before = snapshotTree(dir);
    const again = train2d(dir, 5);
    assert.equal(again.code, 1, again.err);
    assert.match(again.err, /already holds a checkpoint.*--resume.*--force/);
    assert.equal(again.err.trim().split("\n").length, 1, again.err);
    assertTreeKept(before, dir);
    const forced = train2d(dir, 5, "--force");
    assert.equal(forced.code, 0, forced.err);
    assert.equal(readJson(join(dir, "ckpt.json")).step, 5);
    assert.equal(readFileSync(join(dir, "notes.txt"), "utf8"), "my notes");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("train2d --resume refuses a different --coupling or --path, naming the flag and the stored value", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 20).code, 0);
    const before = snapshotTree(dir);
    const ot = train2d(dir, 30, "--resume", "--coupling", "ot");
    assert.equal(ot.code, 1, ot.err);
    assert.match(ot.err, /--coupling independent \(you passed ot\)/);
    const vp = train2d(dir, 30, "--resume", "--path", "vp");
    assert.equal(vp.code, 1, vp.err);
    assert.match(vp.err, /--path straight \(you passed vp\)/);
    assertTreeKept(before, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a checkpoint without Fourier features (written before the option) resumes with --fourier-features 0 and is refused without it, naming the flag", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 20, "--fourier-features", "0").code, 0);
    const model = readJson(join(dir, "ckpt.json")).model as Record<string, unknown>;
    assert.deepEqual(Object.keys(model).sort(), ["depth", "dim", "hidden", "timeEmbDim"], "the pre-option config");
    const before = snapshotTree(dir);
    const plain = train2d(dir, 30, "--resume");
    assert.equal(plain.code, 1, plain.err);
    assert.match(plain.err, /trained with --fourier-features 0 \(you passed 32\).*; pass the same flags/);
    assertTreeKept(before, dir);
    const resumed = train2d(dir, 30, "--resume", "--fourier-features", "0", "--fourier-scale", "2");
    assert.equal(resumed.code, 0, resumed.err);
    assert.equal(readJson(join(dir, "ckpt.json")).step, 30);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("train2d --resume with another --lr and --seed keeps the record of how earlier steps were trained", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 20).code, 0);
    const r = train2d(dir, 30, "--resume", "--lr", "5e-4", "--seed", "7");
    assert.equal(r.code, 0, r.err);
    const cfg = readJson(join(dir, "ckpt.json"));
    assert.equal(cfg.step, 30);
    const segments = cfg.segments as { from: number; to: number; train: { lr: number; seed: number } }[];
    assert.deepEqual(
      segments.map((s) => [s.from, s.to, s.train.lr, s.train.seed]),
      [
        [0, 20, TRAIN2D_DEFAULTS.lr, 0],
        [20, 30, 5e-4, 7],
      ],
    );
    // Resuming again with the same settings extends the last segment instead of adding one.
    assert.equal(train2d(dir, 35, "--resume", "--lr", "5e-4", "--seed", "7").code, 0);
    const again = readJson(join(dir, "ckpt.json")).segments as { from: number; to: number }[];
    assert.deepEqual(
      again.map((s) => [s.from, s.to]),
      [
        [0, 20],
        [20, 35],
      ],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a save killed between its two files after a resume with another --lr still loads its newest weights", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 20).code, 0);
    const oldJson = readFileSync(join(dir, "ckpt.json"));
    assert.equal(train2d(dir, 30, "--resume", "--lr", "5e-4").code, 0);
    writeFileSync(join(dir, "ckpt.json"), oldJson);
    const r = train2d(dir, 35, "--resume", "--lr", "5e-4");
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /resuming from step 30/);
    const segments = readJson(join(dir, "ckpt.json")).segments as { from: number; to: number; train: { lr: number } }[];
    assert.deepEqual(
      segments.map((s) => [s.from, s.to, s.train.lr]),
      [
        [0, 20, TRAIN2D_DEFAULTS.lr],
        [20, 35, 5e-4],
      ],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("train2d --resume on a folder without a checkpoint says so and exits 1", () => {
  const dir = tempDir();
  try {
    writeFileSync(join(dir, "notes.txt"), "mine");
    const before = snapshotTree(dir);
    const r = train2d(dir, 5, "--resume");
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /--resume: .*no checkpoint/);
    assertTreeKept(before, dir);
    assert.equal(existsSync(join(dir, "ckpt.safetensors")), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("train2d --resume with only the weights file (killed between the two writes) continues from the embedded config", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 20).code, 0);
    rmSync(join(dir, "ckpt.json"));
    const r = train2d(dir, 30, "--resume");
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /resuming from step 20/);
    const cfg = readJson(join(dir, "ckpt.json"));
    assert.equal(cfg.step, 30);
    const loss = decodeSafetensors(readFileSync(join(dir, "ckpt.safetensors"))).tensors["log.loss"];
    assert.deepEqual(loss.shape, [30]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("resuming a finished run says there is nothing to train, reports no rate and rewrites no checkpoint", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 20).code, 0);
    const ckpt = ["ckpt.json", "ckpt.safetensors"].map((f) => readFileSync(join(dir, f)));
    const r = train2d(dir, 20, "--resume");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /already at step 20 of 20; nothing to train/);
    assert.doesNotMatch(r.out, /steps\/s/);
    assert.deepEqual(
      ["ckpt.json", "ckpt.safetensors"].map((f) => readFileSync(join(dir, f))),
      ckpt,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("stale temp files of a killed save are removed on the next start; other files are not touched", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 20).code, 0);
    // A pid that has exited: a finished child's.
    const dead = spawnSync(process.execPath, ["-e", ""]).pid;
    const weights = readFileSync(join(dir, "ckpt.safetensors"));
    const stale = [`ckpt.safetensors.flowmatch-${dead}-0123456789ab.tmp`, `ckpt.json.${dead}.0123456789ab.tmp`];
    const kept = [
      `ckpt.safetensors.flowmatch-${process.pid}-0123456789ab.tmp`, // a live writer's
      "ckpt.safetensors.tmp",
      "my.12.0123456789ab.tmp",
      "notes.tmp",
    ];
    const hourAgo = new Date(Date.now() - 3600_000);
    for (const name of [...stale, ...kept]) {
      writeFileSync(join(dir, name), weights);
      utimesSync(join(dir, name), hourAgo, hourAgo);
    }
    const before = snapshotTree(dir);
    for (const name of stale) before.delete(name);
    const r = train2d(dir, 25, "--resume");
    assert.equal(r.code, 0, r.err);
    for (const name of stale) assert.equal(existsSync(join(dir, name)), false, `${name} was left behind`);
    for (const name of kept) assert.ok(existsSync(join(dir, name)), `${name} was removed`);
    for (const name of ["ckpt.json", "ckpt.safetensors", "samples.png", "loss.png", "metrics.json", "vector_field.gif", "evolution.png"])
      before.delete(name);
    assertTreeKept(before, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("non-finite weights are refused at load, naming the tensor", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 10).code, 0);
    const path = join(dir, "ckpt.safetensors");
    const { tensors, metadata } = decodeSafetensors(readFileSync(path));
    const name = "ema.layers.0.weight" in tensors ? "ema.layers.0.weight" : Object.keys(tensors).find((k) => k.startsWith("ema."))!;
    (tensors[name].data as Float32Array)[3] = NaN;
    const bytes = encodeSafetensors(tensors, metadata);
    writeFileSync(path, bytes);
    const json = readJson(join(dir, "ckpt.json"));
    json.weightsSha256 = createHash("sha256").update(bytes).digest("hex");
    writeFileSync(join(dir, "ckpt.json"), JSON.stringify(json));
    const before = snapshotTree(dir);
    const r = runCli(["sample2d", "--ckpt", dir, "--n", "50", "--nfe", "4", "--frames", "2", "--out", join(dir, "s")]);
    assert.equal(r.code, 1, r.out + r.err);
    assert.match(r.err, new RegExp(`tensor "${name.replace(/\./g, "\\.")}" has a non-finite value \\(NaN\\)`));
    assertTreeKept(before, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("reflow: a tampered or corrupt pairs cache is refused with advice to delete it; a checkpoint is not replaced without --force", () => {
  const dir = tempDir();
  try {
    const teacher = join(dir, "teacher");
    assert.equal(train2d(teacher, 20).code, 0);
    const tcfg = readJson(join(teacher, "ckpt.json"));
    const out = join(dir, "reflow");
    mkdirSync(out);
    const flags = [
      "reflow",
      "--teacher",
      teacher,
      "--out",
      out,
      "--pairs",
      "512",
      "--steps",
      "4",
      "--batch-size",
      "32",
      "--pair-nfe",
      "4",
      "--seed",
      "0",
    ];
    // 10 rows under metadata that claims the 512 pairs this run wants.
    const meta = { teacherRun: String(tcfg.runId), teacherStep: String(tcfg.step), n: "512", seed: "0", solver: "rk4", nfe: "4" };
    const rows = { dtype: "F32" as const, shape: [10, 2], data: new Float32Array(20) };
    writeFileSync(join(out, "pairs.safetensors"), encodeSafetensors({ x0: rows, x1: rows }, meta));
    let before = snapshotTree(dir);
    const tampered = runCli(flags);
    assert.equal(tampered.code, 1, tampered.out + tampered.err);
    assert.match(tampered.err, /pairs\.safetensors holds 10 pairs .*512.*delete .*pairs\.safetensors/);
    assertTreeKept(before, dir);

    writeFileSync(join(out, "pairs.safetensors"), encodeSafetensors({ x0: rows, x1: rows }, meta).subarray(0, 60));
    before = snapshotTree(dir);
    const corrupt = runCli(flags);
    assert.equal(corrupt.code, 1, corrupt.out + corrupt.err);
    assert.match(corrupt.err, /delete .*pairs\.safetensors/);
    assert.doesNotMatch(corrupt.err, /re-run training/);
    assertTreeKept(before, dir);

    rmSync(join(out, "pairs.safetensors"));
    const ok = runCli(flags);
    assert.equal(ok.code, 0, ok.err);
    before = snapshotTree(dir);
    const again = runCli(flags);
    assert.equal(again.code, 1, again.err);
    assert.match(again.err, /already holds a checkpoint.*--resume.*--force/);
    const otherPairs = runCli([...flags, "--resume", "--pairs", "1024"]);
    assert.equal(otherPairs.code, 1, otherPairs.err);
    assert.match(otherPairs.err, /--pairs 512 \(you passed 1024\)/);
    assertTreeKept(before, dir);
    // The last --steps wins.
    const resumed = runCli([...flags, "--resume", "--steps", "6"]);
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.err, /reusing 512 teacher pairs/);
    const segments = readJson(join(out, "ckpt.json")).segments as { from: number; to: number }[];
    assert.deepEqual(
      segments.map((s) => [s.from, s.to]),
      [[0, 6]],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("export refuses to write over its own checkpoint and explains a folder as --onnx", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 5).code, 0);
    const before = snapshotTree(dir);
    for (const target of ["ckpt.safetensors", "ckpt.json"]) {
      const r = runCli(["export", "--ckpt", dir, "--onnx", join(dir, ".", target)]);
      assert.equal(r.code, 1, r.out + r.err);
      assert.match(r.err, /is the checkpoint being exported/);
    }
    const folder = runCli(["export", "--ckpt", dir, "--onnx", dir]);
    assert.equal(folder.code, 1, folder.out + folder.err);
    assert.match(folder.err, /^error: --onnx .* is a folder; pass a file path/);
    assertTreeKept(before, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("train-image --resume on weights that do not fit: the hint names the UNet's flags, not the MLP's", async () => {
  const dir = tempDir();
  try {
    const data = levelFolder(join(dir, "data"), [0, 200]);
    const out = join(dir, "run");
    const flags = ["train-image", "--dataset", `folder:${data}`, "--out", out, "--batch-size", "4", "--channels", "4,4"];
    const tiny = ["--time-emb-dim", "4", "--groups", "2", "--per-class", "1", "--nfe", "1", "--solver", "euler", "--backend", "jax"];
    const first = runCli([...flags, ...tiny, "--steps", "1"]);
    assert.equal(first.code, 0, first.err);
    // One weight lost (re-saved with a matching hash, so only the shapes check can catch it).
    const ckpt = await loadCheckpoint(out);
    const lost = Object.keys(ckpt.tensors).find((k) => /^[a-z]/.test(k) && !k.startsWith("ema.") && !k.startsWith("opt."));
    assert.ok(lost);
    delete ckpt.tensors[lost];
    await saveCheckpoint(out, ckpt);
    const before = snapshotTree(dir);
    const r = runCli([...flags, ...tiny, "--steps", "2", "--resume"]);
    assert.equal(r.code, 1, r.out + r.err);
    assert.match(r.err, new RegExp(`missing: ${lost.replaceAll(".", "\\.")}`));
    assert.match(r.err, /the number of layers \(the number of --channels or --res-blocks\)/);
    assert.doesNotMatch(r.err, /--depth|--hidden/);
    assertTreeKept(before, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("train-image: no silent replacement, and --resume refuses another --dataset or --path", () => {
  const dir = tempDir();
  try {
    const a = levelFolder(join(dir, "a"), [0, 200]);
    const b = levelFolder(join(dir, "b"), [50, 250]);
    const out = join(dir, "run");
    const flags = (ds: string, ...extra: string[]) => [
      "train-image",
      "--dataset",
      `folder:${ds}`,
      "--out",
      out,
      "--steps",
      "2",
      "--batch-size",
      "4",
      "--channels",
      "4,4",
      "--time-emb-dim",
      "4",
      "--groups",
      "2",
      "--per-class",
      "1",
      "--nfe",
      "1",
      "--solver",
      "euler",
      ...extra,
    ];
    const first = runCli(flags(a));
    assert.equal(first.code, 0, first.err);
    const before = snapshotTree(dir);
    const again = runCli(flags(a));
    assert.equal(again.code, 1, again.err);
    assert.match(again.err, /already holds a checkpoint.*--resume.*--force/);
    const other = runCli(flags(b, "--resume", "--steps", "3"));
    assert.equal(other.code, 1, other.err);
    assert.match(other.err, new RegExp(`--dataset folder:${a.replace(/[/.]/g, "\\$&")} \\(you passed folder:`));
    const vp = runCli(flags(a, "--resume", "--steps", "3", "--path", "vp"));
    assert.equal(vp.code, 1, vp.err);
    assert.match(vp.err, /--path straight \(you passed vp\)/);
    assertTreeKept(before, dir);
    assert.deepEqual(
      readdirSync(out).filter((f) => f.endsWith(".tmp")),
      [],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
