// Issue 4's promise on a small, fast configuration: on checkerboard, 2-rectified flow at NFE 1 is
// much closer to the data than its teacher at NFE 1, and its paths are straighter.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../../src/pipelines/model.js";
import { reflow2d } from "../../../src/pipelines/reflow2d.js";
import { compare2d } from "../../../src/pipelines/compare2d.js";
import { trainCheckerboardTeacher, trainToy } from "../../helpers/toy2d.js";

test("reflow beats its teacher at NFE 1 and straightens the paths (checkerboard)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-reflow-"));
  try {
    const { teacher, teacherDir } = await trainCheckerboardTeacher(dir, 64, 500);
    const reflowDir = join(dir, "reflow");
    await reflow2d({
      teacher,
      teacherPath: teacherDir,
      out: reflowDir,
      pairs: 2000,
      steps: 300,
      batchSize: 256,
      lr: 1e-3,
      seed: 1,
      timeSampler: "uniform",
      emaDecay: 0.99,
      warmStart: true,
      pairSolver: "rk4",
      pairNfe: 40,
    });
    assert.ok(existsSync(join(reflowDir, "pairs.safetensors")), "teacher pairs are stored");
    const student = await loadModel(reflowDir, { kind: "2d" });
    const result = await compare2d(
      [
        { name: "CFM", loaded: teacher },
        { name: "Reflow", loaded: student },
      ],
      { nfes: [1, 4], n: 1000, seed: 5, out: join(dir, "cmp") },
    );
    const [cfm1, reflow1] = result.rows[0].quality;
    console.log(`NFE 1 sliced-W2: CFM ${cfm1.sw2.toFixed(4)}, Reflow ${reflow1.sw2.toFixed(4)} (floor ${cfm1.sw2Floor.toFixed(4)})`);
    console.log(`straightness: CFM ${result.straightness[0].toFixed(4)}, Reflow ${result.straightness[1].toFixed(4)}`);
    assert.ok(reflow1.sw2 < 0.6 * cfm1.sw2, `Reflow NFE-1 SW2 ${reflow1.sw2} should be clearly below CFM's ${cfm1.sw2}`);
    assert.ok(result.straightness[1] < 0.25 * result.straightness[0], "reflow paths are much straighter");
    assert.ok(
      result.files.every((f) => existsSync(f)),
      "GIF and markdown table written",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("each reflow round records its round; pictures name the flow: CFM, 2- and 3-rectified flow, k-step distillation", async () => {
  const { reflowRounds2d } = await import("../../../src/pipelines/reflow2d.js");
  const { flowName } = await import("../../../src/pipelines/run.js");
  const dir = mkdtempSync(join(tmpdir(), "fm-round-"));
  try {
    const teacherDir = join(dir, "cfm");
    await trainToy({
      dataset: "moons",
      steps: 2,
      batchSize: 32,
      model: { dim: 2, hidden: 8, depth: 1, timeEmbDim: 4 },
      out: teacherDir,
      backend: "jax",
    });
    const teacher = await loadModel(teacherDir, { kind: "2d" });
    const small = { pairs: 32, steps: 1, batchSize: 32, lr: 1e-3, seed: 1, timeSampler: "uniform", emaDecay: 0.99 } as const;
    const tiny = { ...small, warmStart: true, pairSolver: "euler", pairNfe: 2, backend: "jax" } as const;
    const { rounds } = await reflowRounds2d({ ...tiny, teacher, teacherPath: teacherDir, out: join(dir, "rf"), rounds: 2 });
    assert.equal(flowName(teacher.config), "CFM");
    assert.deepEqual(
      rounds.map((r) => [(r.model.config.reflow as { round: number }).round, flowName(r.model.config)]),
      [
        [1, "2-rectified flow"],
        [2, "3-rectified flow"],
      ],
    );
    // Distilling round 2 is a round of its own (3), named by its step count.
    const distilled = await reflow2d({
      ...tiny,
      teacher: rounds[1].model,
      teacherPath: rounds[1].out,
      out: join(dir, "d"),
      distillSteps: 1,
    });
    assert.equal((distilled.model.config.reflow as { round: number }).round, 3);
    assert.equal(flowName(distilled.model.config), "1-step distillation");
    // A reflow checkpoint saved before rounds were recorded counts as round 1.
    const { round: _, ...old } = rounds[0].model.config.reflow as Record<string, unknown>;
    assert.equal(flowName({ ...rounds[0].model.config, reflow: old }), "2-rectified flow");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
