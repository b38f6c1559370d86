// A run that goes non-finite, as a user meets it through the CLI: exit 1 with one message that names
// the step, what was not finite and the likely cause, and the checkpoint the user had is kept byte for byte.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { assertTreeKept, runCli, snapshotTree, tempDir } from "../helpers/cli.js";

const SMALL = ["--dataset", "moons", "--hidden", "32", "--depth", "2", "--batch-size", "64", "--n", "200", "--nfe", "4", "--frames", "2"];

test("train2d with a learning rate that blows up stops with the lr advice and keeps the last checkpoint", () => {
  const dir = tempDir("fm-nonfinite-");
  const out = join(dir, "run");
  try {
    const first = runCli(["train2d", ...SMALL, "--steps", "20", "--out", out]);
    assert.equal(first.code, 0, first.err);
    const before = snapshotTree(dir);
    const r = runCli(["train2d", ...SMALL, "--steps", "300", "--lr", "100000", "--resume", "--checkpoint-every", "1000", "--out", out]);
    assert.equal(r.code, 1, r.err);
    const message = r.err.split("\n").filter((l) => l.includes("training stopped"));
    assert.equal(message.length, 1, r.err);
    assert.match(message[0], /training stopped at step \d+: 20 steps in a row \(\d+-\d+\) had a non-finite (loss|gradient norm)/);
    assert.match(message[0], /the checkpoint from step 20 is kept/);
    assert.match(message[0], /The loss rose from .* so the learning rate is the likely cause: lower --lr \(now 100000\)/);
    assert.match(r.err, /step 2\d: .*update skipped, weights unchanged/);
    assertTreeKept(before, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
