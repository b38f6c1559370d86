// 2-D reflow trains through the shared run helper on either backend (issue 10: reflow on ort):
// the same pairs, batches and warm start give the same losses on jax-js and onnxruntime.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trainToy2d } from "../../src/pipelines/toy2d.js";
import { reflow2d } from "../../src/pipelines/reflow2d.js";
import { loadModel } from "../../src/pipelines/model.js";
import { assertTreeKept, runCli, snapshotTree, tempDir } from "../helpers/cli.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures");

test("2-D reflow on ort and on jax: same losses to 1e-4 from the same pairs, and each returns the model it saved", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-reflow-backends-"));
  try {
    const model = { dim: 2, hidden: 16, depth: 2, timeEmbDim: 8 };
    const teacherDir = join(dir, "cfm");
    const teacher = (
      await trainToy2d({
        dataset: "moons",
        steps: 20,
        batchSize: 64,
        lr: 2e-3,
        seed: 0,
        path: "straight",
        timeSampler: "uniform",
        emaDecay: 0.9,
        coupling: "independent",
        model,
        out: teacherDir,
        checkpointEvery: 100,
        resume: false,
        backend: "jax",
      })
    ).model;
    const run = (backend: "ort" | "jax") =>
      reflow2d({
        teacher,
        teacherPath: teacherDir,
        out: join(dir, backend),
        pairs: 256,
        steps: 6,
        batchSize: 64,
        lr: 1e-3,
        seed: 1,
        timeSampler: "uniform",
        emaDecay: 0.9,
        warmStart: true,
        pairSolver: "rk4",
        pairNfe: 8,
        checkpointEvery: 4,
        backend,
      });
    const ort = await run("ort");
    const jax = await run("jax");
    assert.equal(ort.losses.length, 6);
    assert.equal(jax.losses.length, 6);
    for (let i = 0; i < 6; i++)
      assert.ok(
        Math.abs(ort.losses[i] - jax.losses[i]) < 1e-4 * Math.max(1, jax.losses[i]),
        `step ${i + 1}: ort ${ort.losses[i]} vs jax ${jax.losses[i]}`,
      );
    // Two runtimes, not one twice: float rounding differs somewhere in six steps.
    assert.notDeepEqual(ort.losses, jax.losses);
    for (const r of [ort, jax]) {
      const disk = await loadModel(r.out, { kind: "2d" });
      assert.equal(disk.config.step, 6);
      assert.deepEqual(r.model.ema, disk.ema);
      assert.equal((r.model.config.reflow as { teacherRun: string }).teacherRun, teacher.config.runId);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("CLI: reflow --backend jax, then --resume on ort continues the same run; the teacher is untouched; --backend torch exits 2", () => {
  const dir = tempDir();
  const teacher = FIXTURES + "/ckpt-2d-v1";
  const before = snapshotTree(teacher);
  const out = join(dir, "reflow");
  const common = ["reflow", "--teacher", teacher, "--out", out, "--pairs", "64", "--batch-size", "32", "--pair-nfe", "4"];
  const a = runCli([...common, "--steps", "4", "--backend", "jax"]);
  assert.equal(a.code, 0, a.err);
  const b = runCli([...common, "--steps", "6", "--backend", "ort", "--resume"]);
  assert.equal(b.code, 0, b.err);
  assert.match(b.err, /resuming from step 4/);
  assert.equal(JSON.parse(readFileSync(join(out, "ckpt.json"), "utf8")).step, 6);
  assert.match(b.out, /reflow trained in .*checkpoint/);
  assertTreeKept(before, teacher);
  const bad = runCli([...common, "--steps", "6", "--backend", "torch", "--force"]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--backend.*torch/);
  rmSync(dir, { recursive: true, force: true });
});
