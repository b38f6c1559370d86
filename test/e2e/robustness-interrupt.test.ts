// Ctrl-C as a user presses it: every long command stops within seconds, a training command first
// saves a checkpoint that --resume continues from, and the exit code is 130 so `train && sample`
// does not go on. The bounds are liveness bounds for a loaded machine, not speed tests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Rng } from "../../src/core/rng.js";
import { encodeIdx } from "../../src/data/idx.js";
import { odeint, type VelocityField } from "../../src/core/solvers.js";
import { clearStopRequest, Interrupted, requestStop } from "../../src/core/interrupt.js";
import { interruptWhenReady, runCli, startCli, tempDir, trainTiny2d, type InterruptResult } from "../helpers/cli.js";

const EXIT_BOUND_MS = 10_000;
const MLP = ["--hidden", "16", "--depth", "1", "--batch-size", "32"];

/** Starts the command, waits until stderr shows `ready`, sends one SIGINT; resolves to how it ended. */
function interrupt(args: string[], ready: RegExp): Promise<InterruptResult> {
  return interruptWhenReady(startCli(args), ready);
}

function savedStep(dir: string): number {
  return (JSON.parse(readFileSync(join(dir, "ckpt.json"), "utf8")) as { step: number }).step;
}

/** Interrupted: 130 in time, a checkpoint at the step it reports; then --resume continues from it. */
async function assertStopsSavesResumes(args: string[], ready: RegExp, out: string, resumeArgs: (step: number) => string[]): Promise<void> {
  const r = await interrupt(args, ready);
  assert.equal(r.code, 130, `exit code (signal ${r.signal}); stderr:\n${r.err}`);
  assert.ok(r.ms < EXIT_BOUND_MS, `took ${r.ms} ms to stop after Ctrl-C`);
  assert.match(r.err, /interrupted: stopping/);
  const m = /stopped early at step (\d+)/.exec(r.out);
  assert.ok(m, `says where it stopped; stdout:\n${r.out}`);
  const step = Number(m[1]);
  assert.ok(step >= 1);
  assert.equal(savedStep(out), step, "the checkpoint holds the step it stopped at");
  const resumed = runCli([...resumeArgs(step + 2), "--resume"]);
  assert.equal(resumed.code, 0, resumed.err);
  assert.match(resumed.err, new RegExp(`resuming from step ${step}\\b`));
  assert.equal(savedStep(out), step + 2);
}

test("Ctrl-C during train2d saves, exits 130 within seconds, and --resume continues", async () => {
  const dir = tempDir();
  try {
    const out = join(dir, "run");
    const common = ["train2d", "--dataset", "moons", "--out", out, ...MLP, "--n", "200", "--nfe", "4", "--frames", "3"];
    await assertStopsSavesResumes([...common, "--steps", "1000000", "--checkpoint-every", "1000000"], /train2d 1\//, out, (steps) => [
      ...common,
      "--steps",
      String(steps),
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** An IDX folder of 8x8 "bars" images in 4 classes (class k lights rows 2k and 2k+1). */
function writeBars(dir: string, n: number): void {
  mkdirSync(dir, { recursive: true });
  const rng = new Rng(3);
  const pixels = new Uint8Array(n * 64);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 4;
    for (let p = 0; p < 64; p++) pixels[i * 64 + p] = Math.floor(p / 8) >> 1 === i % 4 ? 230 : Math.floor(20 * rng.uniform());
  }
  writeFileSync(join(dir, "train-images-idx3-ubyte"), encodeIdx([n, 8, 8], pixels));
  writeFileSync(join(dir, "train-labels-idx1-ubyte"), encodeIdx([n], labels));
}

const UNET = ["--channels", "8,16", "--time-emb-dim", "16", "--groups", "4", "--batch-size", "8"];
const IMAGE_SAMPLING = ["--per-class", "1", "--solver", "euler", "--nfe", "2"];

test("Ctrl-C during train-image saves, exits 130 within seconds, and --resume continues", async () => {
  const dir = tempDir();
  try {
    writeBars(join(dir, "bars"), 64);
    const out = join(dir, "run");
    const common = ["train-image", "--dataset", `idx:${join(dir, "bars")}`, "--out", out, ...UNET, ...IMAGE_SAMPLING];
    await assertStopsSavesResumes([...common, "--steps", "1000000", "--checkpoint-every", "1000000"], /train-image 1\//, out, (steps) => [
      ...common,
      "--steps",
      String(steps),
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Ctrl-C during 2-D reflow: in the teacher pairs it stops at once; in training it saves and --resume continues", async () => {
  const dir = tempDir();
  try {
    const teacher = join(dir, "teacher");
    trainTiny2d(teacher, 20);

    // Pairs: 10 batches of 4096 at 100 evaluations each; interrupted after the first batch.
    const early = join(dir, "early");
    const p = await interrupt(
      ["reflow", "--teacher", teacher, "--out", early, "--pairs", "40960", "--pair-nfe", "100", "--steps", "10"],
      /pairs\s+4096\//,
    );
    assert.equal(p.code, 130, p.err);
    assert.ok(p.ms < EXIT_BOUND_MS, `took ${p.ms} ms to stop the teacher pairs`);
    assert.ok(!existsSync(join(early, "pairs.safetensors")) && !existsSync(join(early, "ckpt.json")), "no half-made pairs or checkpoint");

    const out = join(dir, "reflow");
    const common = ["reflow", "--teacher", teacher, "--out", out, "--pairs", "64", "--batch-size", "32", "--pair-nfe", "8"];
    await assertStopsSavesResumes([...common, "--steps", "1000000"], /reflow\s+1\//, out, (steps) => [...common, "--steps", String(steps)]);
    // --resume with another teacher setup is refused, naming what differs.
    const other = runCli([...common, "--pair-nfe", "4", "--steps", "5", "--resume"]);
    assert.equal(other.code, 1);
    assert.match(other.err, /cannot resume .*: it was trained with --pair-nfe 8 \(you passed 4\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Ctrl-C in round 2 of reflow --rounds 2 saves that round; --resume keeps round 1 and finishes round 2", async () => {
  const dir = tempDir();
  try {
    const teacher = join(dir, "teacher");
    trainTiny2d(teacher, 20);
    const out = join(dir, "rounds");
    const args = [
      "reflow",
      "--teacher",
      teacher,
      "--out",
      out,
      "--rounds",
      "2",
      "--pairs",
      "64",
      "--batch-size",
      "32",
      "--pair-nfe",
      "8",
      "--steps",
      "1000",
      "--backend",
      "jax",
    ];
    const r = await interrupt(args, /round 2\/2[\s\S]*reflow\s+1\//);
    assert.equal(r.code, 130, `exit code (signal ${r.signal}); stderr:\n${r.err}`);
    assert.ok(r.ms < EXIT_BOUND_MS, `took ${r.ms} ms to stop after Ctrl-C`);
    const m = /stopped early in round 2 at step (\d+)/.exec(r.out);
    assert.ok(m, `says where it stopped; stdout:\n${r.out}`);
    const step = Number(m[1]);
    assert.equal(savedStep(join(out, "round1")), 1000, "round 1 finished before the stop");
    assert.equal(savedStep(join(out, "round2")), step, "round 2 saved where it stopped");
    const round1 = readFileSync(join(out, "round1", "ckpt.safetensors"));
    const resumed = runCli([...args, "--resume"]);
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.err, new RegExp(`resuming from step ${step}\\b`));
    assert.match(resumed.err, /round 1\/2: .* at step 1000 \(pairs reused\)/);
    assert.ok(readFileSync(join(out, "round1", "ckpt.safetensors")).equals(round1), "round 1 untouched");
    assert.equal(savedStep(join(out, "round2")), 1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Ctrl-C during image reflow training saves, exits 130, and --resume continues", async () => {
  const dir = tempDir();
  try {
    writeBars(join(dir, "bars"), 32);
    const teacher = join(dir, "teacher");
    const trained = runCli([
      "train-image",
      "--dataset",
      `idx:${join(dir, "bars")}`,
      "--out",
      teacher,
      ...UNET,
      ...IMAGE_SAMPLING,
      "--steps",
      "4",
    ]);
    assert.equal(trained.code, 0, trained.err);
    const out = join(dir, "reflow");
    const common = [
      "reflow",
      "--teacher",
      teacher,
      "--out",
      out,
      "--pairs",
      "16",
      "--batch-size",
      "8",
      "--pair-solver",
      "euler",
      "--pair-nfe",
      "2",
      "--guidance",
      "1",
    ];
    await assertStopsSavesResumes([...common, "--steps", "1000000"], /reflow\s+1\//, out, (steps) => [...common, "--steps", String(steps)]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a solve that never awaits a timer still lets a stop request in, and then throws Interrupted", async () => {
  // A synchronous field: without pause points the timer below could not fire until the solve ended.
  let calls = 0;
  const field: VelocityField = (x) => {
    calls++;
    const until = performance.now() + 1;
    while (performance.now() < until);
    return x.map((v) => -v);
  };
  const timer = setTimeout(requestStop, 100);
  try {
    await assert.rejects(odeint(field, new Float32Array([1]), { solver: "euler", nfe: 100_000 }), Interrupted);
    assert.ok(calls < 100_000, `the solve ran to the end (${calls} calls)`);
  } finally {
    clearTimeout(timer);
    clearStopRequest();
  }
});
