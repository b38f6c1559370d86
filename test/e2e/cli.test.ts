// The command line as a user meets it: bad input gets a clear message and a non-zero exit code,
// an interrupted run leaves its last good checkpoint, and --resume continues from it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, existsSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI_ARGS } from "../helpers/cli.js";

function run(args: string[]) {
  const r = spawnSync(process.execPath, [...CLI_ARGS, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const TINY = ["--hidden", "16", "--depth", "1", "--batch-size", "32", "--n", "200", "--nfe", "8", "--frames", "3"];

test("unknown dataset lists the valid names and exits 2 (a bad flag value)", () => {
  const r = run(["train2d", "--dataset", "checkerbord", "--steps", "5"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown dataset "checkerbord"/);
  assert.match(r.err, /checkerboard, moons, 8gaussians, circles, spirals, swissroll/);
});

test("non-positive steps and unknown solver are rejected as bad flags (exit 2)", () => {
  const zero = run(["train2d", "--dataset", "moons", "--steps", "0"]);
  assert.equal(zero.code, 2);
  assert.match(zero.err, /--steps.*must be a positive integer, got "0"/);
  const solver = run(["sample2d", "--ckpt", "nowhere", "--solver", "rk5"]);
  assert.equal(solver.code, 2);
  assert.match(solver.err, /rk5/);
});

test("missing, corrupt and mismatched checkpoints give clear errors", () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-cli-"));
  try {
    const missing = run(["sample2d", "--ckpt", join(dir, "none")]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /error: .*(not found|does not exist|no checkpoint)/i);

    const trained = run(["train2d", "--dataset", "moons", "--steps", "20", "--out", dir, ...TINY]);
    assert.equal(trained.code, 0, trained.err);
    const weights = join(dir, "ckpt.safetensors");
    const good = readFileSync(weights);
    writeFileSync(weights, good.subarray(0, good.length - 100));
    const corrupt = run(["sample2d", "--ckpt", dir]);
    assert.equal(corrupt.code, 1);
    assert.match(corrupt.err, /error: /);
    assert.doesNotMatch(corrupt.err, /\n\s+at /, "no stack trace for a user error");

    // Weights from a different model next to this config.
    const other = mkdtempSync(join(tmpdir(), "fm-cli-other-"));
    const otherRun = run(["train2d", "--dataset", "moons", "--steps", "5", "--out", other, ...TINY.map((a) => (a === "16" ? "24" : a))]);
    assert.equal(otherRun.code, 0, otherRun.err);
    writeFileSync(weights, readFileSync(join(other, "ckpt.safetensors")));
    const mismatched = run(["sample2d", "--ckpt", dir]);
    assert.equal(mismatched.code, 1);
    assert.match(mismatched.err, /error: /);
    rmSync(other, { recursive: true, force: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a killed run leaves its last good checkpoint and --resume continues from it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-cli-kill-"));
  try {
    const child = spawn(
      process.execPath,
      [...CLI_ARGS, "train2d", "--dataset", "8gaussians", "--steps", "100000", "--checkpoint-every", "25", "--out", dir, ...TINY],
      {
        stdio: "ignore",
      },
    );
    const json = join(dir, "ckpt.json");
    const deadline = Date.now() + 90_000;
    while (!existsSync(json) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.ok(existsSync(json), "a checkpoint was written");
    await new Promise((r) => setTimeout(r, 500));
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const saved = JSON.parse(readFileSync(json, "utf8")) as { step: number };
    assert.ok(saved.step >= 25 && saved.step % 25 === 0, `checkpoint at a multiple of 25, got ${saved.step}`);
    // The checkpoint on disk is loadable (never half-written).
    const sampled = run(["sample2d", "--ckpt", dir, "--n", "100", "--nfe", "4", "--frames", "2"]);
    assert.equal(sampled.code, 0, sampled.err);
    const resumed = run(["train2d", "--dataset", "8gaussians", "--steps", String(saved.step + 50), "--resume", "--out", dir, ...TINY]);
    assert.equal(resumed.code, 0, resumed.err);
    // A kill between the weights' and the config's rename leaves the newer weights (which embed
    // their config) and the older ckpt.json; loading takes the newer save.
    const from = Number(/resuming from step (\d+)/.exec(resumed.err)?.[1]);
    assert.ok(from === saved.step || from === saved.step + 25, `resumed from ${from}, checkpoint says ${saved.step}`);
    const after = JSON.parse(readFileSync(json, "utf8")) as { step: number };
    assert.equal(after.step, saved.step + 50);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--version prints package.json's version and exits 0", () => {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, "..", "..", "package.json"), "utf8")) as { version: string };
  for (const flag of ["--version", "-V"]) {
    const r = run([flag]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `${pkg.version}\n`);
  }
});
