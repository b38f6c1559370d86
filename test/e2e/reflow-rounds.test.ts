// k-rectified flow and one-step distillation (issue 15 item 4) on a tiny checkerboard model:
// each round's pairs come from the previous round's model (checked by re-integrating them), the
// teacher evaluations are counted, a stopped round resumes, straightness falls round by round, and a
// one-step student beats its teacher at NFE 1; compare takes all of them at once through the CLI.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { loadModel, type Loaded2d } from "../../src/pipelines/model.js";
import { distillTimes, reflow2d, reflowRounds2d, roundDir, type Reflow2dOptions } from "../../src/pipelines/reflow2d.js";
import { compare2d, straightnessFromEuler } from "../../src/pipelines/compare2d.js";
import { decodeSafetensors } from "../../src/io/safetensors.js";
import { Rng } from "../../src/core/rng.js";
import { odeint } from "../../src/core/solvers.js";
import { modelField } from "../../src/core/field.js";
import { mlpModel } from "../../src/core/models/mlp.js";
import { runCli, tempDir } from "../helpers/cli.js";
import { trainCheckerboardTeacher } from "../helpers/toy2d.js";

const PAIRS = 1000;
const PAIR_NFE = 20;

async function straightness(m: Loaded2d): Promise<number> {
  const f = modelField(mlpModel(m.config.model), m.ema, { sampleShape: [2] });
  try {
    const x0 = new Rng(11).normals(1000 * 2);
    const r = await odeint(f.field, x0, { solver: "euler", nfe: 50, saveAt: Array.from({ length: 51 }, (_, k) => k / 50) });
    return straightnessFromEuler(r.trajectory?.xs ?? [], 2);
  } finally {
    f.dispose();
  }
}

function reflowOf(m: Loaded2d): Record<string, unknown> {
  return m.config.reflow as Record<string, unknown>;
}

test("distillTimes draws only the k-step Euler grid 0, 1/k, ..., (k-1)/k", () => {
  const t = distillTimes(4)(400, new Rng(1));
  const seen = new Set(Array.from(t));
  assert.deepEqual([...seen].sort(), [0, 0.25, 0.5, 0.75]);
  assert.deepEqual(Array.from(new Set(distillTimes(1)(50, new Rng(2)))), [0]);
});

test("reflow --rounds: pairs from the previous round, counted evaluations, resume per round, straighter each round; distill beats its teacher at NFE 1", async () => {
  const dir = tempDir("fm-rounds-");
  try {
    const { teacher, teacherDir } = await trainCheckerboardTeacher(dir, 48, 300);
    const out = join(dir, "reflow");
    const base: Omit<Reflow2dOptions, "shouldStop"> = {
      teacher,
      teacherPath: teacherDir,
      out,
      pairs: PAIRS,
      steps: 150,
      batchSize: 256,
      lr: 1e-3,
      seed: 1,
      timeSampler: "uniform",
      emaDecay: 0.99,
      warmStart: true,
      pairSolver: "rk4",
      pairNfe: PAIR_NFE,
      checkpointEvery: 50,
      backend: "jax",
    };

    // Two rounds, stopped in the middle of round 2 (as Ctrl-C would).
    let round = 0;
    const first = await reflowRounds2d({
      ...base,
      rounds: 2,
      onRound: (r) => (round = r),
      shouldStop: () => round === 2 && stepsInRound2() >= 50,
    });
    function stepsInRound2(): number {
      const cfg = join(roundDir(out, 2), "ckpt.json");
      return existsSync(cfg) ? (JSON.parse(readFileSync(cfg, "utf8")) as { step: number }).step : 0;
    }
    assert.equal(first.stopped, true);
    assert.deepEqual(
      first.rounds.map((r) => r.pairNfe),
      [PAIR_NFE, PAIR_NFE],
      "one RK4 solve of 1,000 pairs per round: 5 steps x 4 evaluations",
    );
    assert.equal(first.rounds[0].stepsTrained, 150);
    assert.ok(
      first.rounds[1].stepsTrained >= 50 && first.rounds[1].stepsTrained < 150,
      `round 2 stopped early (${first.rounds[1].stepsTrained} steps)`,
    );

    // Round 2's pairs are round 1's model integrated from round 2's noise.
    const round1 = await loadModel(roundDir(out, 1), { kind: "2d" });
    const { tensors } = decodeSafetensors(readFileSync(join(roundDir(out, 2), "pairs.safetensors")), "pairs");
    const x0 = tensors.x0.data as Float32Array;
    const f = modelField(mlpModel(round1.config.model), round1.ema, { sampleShape: [2] });
    const again = await odeint(f.field, x0, { solver: "rk4", nfe: PAIR_NFE });
    f.dispose();
    const x1 = tensors.x1.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < x1.length; i++) worst = Math.max(worst, Math.abs(again.x[i] - x1[i]));
    assert.ok(worst < 1e-4, `round 2's pairs are round 1's flow (max difference ${worst})`);
    assert.equal(reflowOf(round1).teacherRun, teacher.config.runId);

    // Without --resume or --force the rounds are refused before any work; --resume continues round 2 and adds round 3.
    await assert.rejects(reflowRounds2d({ ...base, rounds: 3 }), /already holds a checkpoint.*--resume/);
    const second = await reflowRounds2d({ ...base, rounds: 3, resume: true });
    assert.equal(second.stopped, false);
    assert.deepEqual(
      second.rounds.map((r) => r.pairNfe),
      [0, 0, PAIR_NFE],
      "rounds 1 and 2 reuse their pairs; round 3 draws from round 2",
    );
    assert.equal(second.rounds[0].stepsTrained, 0);
    assert.equal(second.rounds[1].stepsTrained, 150 - first.rounds[1].stepsTrained);
    assert.equal(second.rounds[2].stepsTrained, 150);
    const round3 = await loadModel(roundDir(out, 3), { kind: "2d" });
    assert.equal(reflowOf(round3).teacherRun, second.rounds[1].model.config.runId);

    const s = [
      await straightness(teacher),
      ...(await Promise.all([1, 2, 3].map(async (r) => straightness(await loadModel(roundDir(out, r), { kind: "2d" }))))),
    ];
    console.log(
      `straightness: teacher ${s[0].toFixed(4)}, rounds 1-3 ${s
        .slice(1)
        .map((v) => v.toFixed(4))
        .join(", ")}`,
    );
    for (let r = 1; r <= 3; r++) assert.ok(s[r] < s[r - 1], `round ${r} is straighter than its teacher (${s[r]} vs ${s[r - 1]})`);

    // One-step distillation from the CFM teacher: its NFE-1 sliced-W2 beats the teacher's.
    const distillDir = join(dir, "distill");
    const d = await reflow2d({ ...base, out: distillDir, distillSteps: 1, steps: 200 });
    assert.equal(d.pairNfe, PAIR_NFE);
    assert.equal(reflowOf(d.model).distill, 1);
    const cmp = await compare2d(
      [
        { name: "CFM", loaded: teacher },
        { name: "1-step", loaded: d.model },
      ],
      { nfes: [1], n: 1000, seed: 5, out: join(dir, "cmp") },
    );
    const [cfm1, one1] = cmp.rows[0].quality;
    console.log(`NFE 1 sliced-W2: CFM ${cfm1.sw2.toFixed(4)}, distilled ${one1.sw2.toFixed(4)} (floor ${cfm1.sw2Floor.toFixed(4)})`);
    assert.ok(one1.sw2 < 0.7 * cfm1.sw2, `distilled NFE-1 SW2 ${one1.sw2} should be clearly below the teacher's ${cfm1.sw2}`);

    // compare takes any number of checkpoints: five here, one table row per model and NFE.
    const ckpts = [teacherDir, roundDir(out, 1), roundDir(out, 2), roundDir(out, 3), distillDir];
    const cli = runCli([
      "compare",
      "--ckpts",
      ...ckpts,
      "--names",
      "CFM",
      "R1",
      "R2",
      "R3",
      "D1",
      "--nfe",
      "1,2",
      "--n",
      "300",
      "--density-n",
      "300",
      "--out",
      join(dir, "cmp5"),
    ]);
    assert.equal(cli.code, 0, cli.err);
    for (const name of ["CFM", "R1", "R2", "R3", "D1"])
      assert.equal(
        cli.out.split("\n").filter((l: string) => new RegExp(`^\\| \\d+ \\| ${name} \\|`).test(l)).length,
        2,
        `${name}: a row at NFE 1 and 2`,
      );
    assert.match(cli.out, /Straightness.*CFM [\d.]+, R1 [\d.]+, R2 [\d.]+, R3 [\d.]+, D1 [\d.]+/);
    assert.ok(existsSync(join(dir, "cmp5", "checkerboard_cfm_vs_r1_vs_r2_vs_r3_vs_d1.gif")));
    // The density-and-field GIF: one column per model, 21 frames (20 RK4 steps) plus held ends.
    const fields = readFileSync(join(dir, "cmp5", "checkerboard_cfm_vs_r1_vs_r2_vs_r3_vs_d1_fields.gif"));
    assert.equal(fields.subarray(0, 6).toString("latin1"), "GIF89a");
    assert.ok(fields.readUInt16LE(6) > 5 * 300, `five columns wide (${fields.readUInt16LE(6)} px)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
