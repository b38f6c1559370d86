// "NFE" printed or stored is the number of network evaluations made: the GIF's frames never add
// solver steps or change the samples, and a budget a solver cannot spend exactly is refused up front.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Rng } from "../../src/core/rng.js";
import { modelField } from "../../src/core/field.js";
import { mlpModel } from "../../src/core/models/mlp.js";
import { odeint, type VelocityField } from "../../src/core/solvers.js";
import { UserError } from "../../src/core/errors.js";
import { evaluateToy2d } from "../../src/pipelines/toy2dSampling.js";
import { loadModel } from "../../src/pipelines/model.js";
import { compare2d } from "../../src/pipelines/compare2d.js";
import { assertTreeKept, runCli, snapshotTree, tempDir } from "../helpers/cli.js";

// Raw t input (no time embedding): dopri5 then needs tens of evaluations, not hundreds.
const TINY = ["--hidden", "16", "--depth", "1", "--time-emb-dim", "0", "--batch-size", "32", "--n", "200", "--nfe", "4", "--frames", "2"];

function counting(field: VelocityField): { field: VelocityField; calls: () => number } {
  let calls = 0;
  return { field: (x, t) => (calls++, field(x, t)), calls: () => calls };
}

// One tiny trained model for every test here.
const shared = tempDir();
const ckpt = join(shared, "ckpt");
before(() => {
  const trained = runCli(["train2d", "--dataset", "moons", "--steps", "20", "--out", ckpt, ...TINY]);
  assert.equal(trained.code, 0, trained.err);
});
after(() => rmSync(shared, { recursive: true, force: true }));

interface Metrics {
  nfe: number;
  steps: number;
  sw2: number;
  mmd: number;
}

test("sample2d --nfe 1 makes one evaluation whatever --frames is, and says so", async () => {
  const dir = tempDir();
  try {
    const sample = (frames: number, out: string) =>
      runCli([
        "sample2d",
        "--ckpt",
        ckpt,
        "--solver",
        "euler",
        "--nfe",
        "1",
        "--frames",
        String(frames),
        "--n",
        "300",
        "--seed",
        "7",
        "--out",
        join(dir, out),
      ]);
    const many = sample(41, "f41");
    const two = sample(2, "f2");
    for (const r of [many, two]) {
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /quality \(euler, NFE 1, n=300\)/);
    }
    const m41 = JSON.parse(readFileSync(join(dir, "f41", "metrics.json"), "utf8")) as Metrics;
    const m2 = JSON.parse(readFileSync(join(dir, "f2", "metrics.json"), "utf8")) as Metrics;
    // Frames never change the samples: same quality numbers, same picture.
    assert.deepEqual(m41, m2);
    assert.ok(readFileSync(join(dir, "f41", "samples.png")).equals(readFileSync(join(dir, "f2", "samples.png"))));
    assert.deepEqual([m41.nfe, m41.steps], [1, 1]);

    // The samples are one Euler step from the seeded noise: x0 + v(x0, 0), one network call.
    const loaded = await loadModel(ckpt, { kind: "2d" });
    const f = modelField(mlpModel(loaded.config.model), loaded.ema, { sampleShape: [2] });
    try {
      const x0 = new Rng(7).normals(600);
      const v = await f.field(x0, 0);
      const quality = await evaluateToy2d(
        "moons",
        Float32Array.from(x0, (x, i) => x + v[i]),
      );
      assert.equal(f.evaluations(), 1);
      assert.equal(m41.sw2, quality.sw2);
      assert.equal(m41.mmd, quality.mmd);

      // dopri5 reports the evaluations it made (counted here at the field, on the same noise).
      const d = runCli(["sample2d", "--ckpt", ckpt, "--solver", "dopri5", "--n", "300", "--seed", "7", "--out", join(dir, "d")]);
      assert.equal(d.code, 0, d.err);
      const md = JSON.parse(readFileSync(join(dir, "d", "metrics.json"), "utf8")) as Metrics;
      const counted = counting(f.field);
      await odeint(counted.field, x0, { solver: "dopri5" });
      assert.equal(md.nfe, counted.calls());
      assert.match(d.out, new RegExp(`quality \\(dopri5, NFE ${counted.calls()}, n=300\\)`));
    } finally {
      f.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a budget the solver cannot spend exactly exits 2 naming the nearest ones, before touching anything", () => {
  const dir = tempDir();
  try {
    const kept = snapshotTree(shared);
    const heun = runCli(["sample2d", "--ckpt", ckpt, "--solver", "heun", "--nfe", "5"]);
    assert.equal(heun.code, 2);
    assert.match(heun.err, /heun makes 2 network evaluations per step, so it cannot spend --nfe 5; use --nfe 4 or --nfe 6/);
    // sample-image's default solver is heun: --nfe 1 used to be silently another budget.
    const image = runCli(["sample-image", "--ckpt", ckpt, "--nfe", "1"]);
    assert.equal(image.code, 2);
    assert.match(image.err, /cannot spend --nfe 1; use --nfe 2/);
    const train = runCli(["train2d", "--dataset", "moons", "--steps", "5", "--out", join(dir, "new"), "--solver", "rk4", "--nfe", "10"]);
    assert.equal(train.code, 2, "refused before training");
    assert.match(train.err, /use --nfe 8 or --nfe 12/);
    const pairs = runCli(["reflow", "--teacher", ckpt, "--out", join(dir, "r"), "--pair-nfe", "30"]);
    assert.equal(pairs.code, 2);
    assert.match(pairs.err, /--pair-nfe 28 or --pair-nfe 32/);
    const cmp = runCli(["compare", "--ckpts", ckpt, ckpt, "--solver", "midpoint", "--nfe", "2,3", "--out", join(dir, "c")]);
    assert.equal(cmp.code, 2);
    assert.match(cmp.err, /midpoint .* cannot spend --nfe 3/);
    assertTreeKept(kept, shared);
    assert.deepEqual(readdirSync(dir), [], "nothing written");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("compare's table reports the evaluations each solve made", async () => {
  const dir = tempDir();
  try {
    const loaded = await loadModel(ckpt, { kind: "2d" });
    const models = [
      { name: "A", loaded },
      { name: "B", loaded },
    ];
    const rk4 = await compare2d(models, { nfes: [4, 8], n: 200, seed: 1, out: dir, solver: "rk4" });
    assert.deepEqual(
      rk4.rows.map((r) => r.made),
      [
        [4, 4],
        [8, 8],
      ],
    );
    assert.match(rk4.markdown, /\n\| 4 \|.*\n\| 8 \|/);
    await assert.rejects(
      compare2d(models, { nfes: [2], n: 200, seed: 1, out: dir, solver: "rk4" }),
      (e: unknown) => e instanceof UserError && /use --nfe 4$/.test(e.message),
    );
    const dopri = await compare2d(models, { nfes: [1], n: 200, seed: 1, out: dir, solver: "dopri5" });
    const made = dopri.rows[0].made[0];
    assert.ok(made > 6, `dopri5 made ${made} evaluations`);
    assert.match(dopri.markdown, new RegExp(`\\n\\| ${made} \\|`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
