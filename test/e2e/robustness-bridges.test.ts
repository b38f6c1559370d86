// train2d with Schrodinger-bridge CFM (--bridge-sigma) and entropic OT (--coupling sinkhorn --reg)
// as a user runs it: the settings are recorded, a resume must keep them, bad combinations are
// refused before any training with a message naming the fix, and nothing the user had changes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { assertTreeKept, runCli, snapshotTree, tempDir } from "../helpers/cli.js";

const TINY = ["--hidden", "16", "--depth", "1", "--batch-size", "32", "--n", "200", "--nfe", "4", "--frames", "2"];
const train2d = (out: string, steps: number, ...flags: string[]) =>
  runCli(["train2d", "--dataset", "8gaussians", "--steps", String(steps), "--out", out, ...TINY, ...flags]);

test("train2d --coupling sinkhorn --reg --bridge-sigma trains, records both, and a resume must keep them", () => {
  const dir = tempDir();
  try {
    const r = train2d(dir, 20, "--coupling", "sinkhorn", "--reg", "0.5", "--bridge-sigma", "0.5");
    assert.equal(r.code, 0, r.err);
    const cfg = JSON.parse(readFileSync(join(dir, "ckpt.json"), "utf8")) as {
      train: { coupling: string; reg: number; bridgeSigma: number };
    };
    assert.deepEqual([cfg.train.coupling, cfg.train.reg, cfg.train.bridgeSigma], ["sinkhorn", 0.5, 0.5]);
    const before = snapshotTree(dir);
    const reg = train2d(dir, 30, "--resume", "--coupling", "sinkhorn", "--reg", "0.1", "--bridge-sigma", "0.5");
    assert.equal(reg.code, 1, reg.err);
    assert.match(reg.err, /--reg 0.5 \(you passed 0.1\)/);
    const sigma = train2d(dir, 30, "--resume", "--coupling", "sinkhorn", "--reg", "0.5");
    assert.equal(sigma.code, 1, sigma.err);
    assert.match(sigma.err, /--bridge-sigma 0.5 \(you passed 0\)/);
    assertTreeKept(before, dir);
    const ok = train2d(dir, 30, "--resume", "--coupling", "sinkhorn", "--reg", "0.5", "--bridge-sigma", "0.5");
    assert.equal(ok.code, 0, ok.err);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bad bridge and sinkhorn settings are refused before training, naming the fix", () => {
  const dir = tempDir();
  try {
    assert.equal(train2d(dir, 5).code, 0);
    const before = snapshotTree(dir);
    const cases: [string[], number, RegExp][] = [
      [["--coupling", "sinkhorn"], 1, /--coupling sinkhorn needs --reg EPS/],
      [["--reg", "0.1"], 1, /--reg applies to --coupling sinkhorn only/],
      [["--bridge-sigma", "0.5", "--path", "vp"], 1, /use --path straight/],
      [["--bridge-sigma", "-1"], 2, /must be a non-negative number, got "-1"/],
      [["--coupling", "sinkhorn", "--reg", "0"], 2, /must be a positive number, got "0"/],
      [["--coupling", "sinkhorn", "--reg", "1e-4"], 1, /Sinkhorn did not converge at --reg 0.0001.*raise --reg/],
    ];
    for (const [flags, code, message] of cases) {
      const r = train2d(join(dir, "new"), 5, ...flags);
      assert.equal(r.code, code, `${flags.join(" ")}: ${r.err}`);
      assert.match(r.err, message, flags.join(" "));
    }
    assertTreeKept(before, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
