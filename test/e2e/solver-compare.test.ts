// `flowmatch compare --solvers`: solvers side by side at equal NFE through the CLI, with every
// NFE in the table the count made, and bad solver lists refused before any work, nothing lost.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { assertTreeKept, runCli, snapshotTree, tempDir } from "../helpers/cli.js";

const TINY = ["--hidden", "16", "--depth", "1", "--batch-size", "32", "--n", "200", "--nfe", "4", "--frames", "2"];
const shared = tempDir();
const ckpt = join(shared, "ckpt");
before(() => {
  const trained = runCli(["train2d", "--dataset", "checkerboard", "--steps", "20", "--out", ckpt, ...TINY]);
  assert.equal(trained.code, 0, trained.err);
});
after(() => rmSync(shared, { recursive: true, force: true }));

test("compare --solvers writes one row per (NFE, solver, grid) it can spend exactly, and no row it cannot", () => {
  const out = join(shared, "cmp");
  const r = runCli([
    "compare",
    "--ckpts",
    ckpt,
    "--names",
    "CFM",
    "--solvers",
    "euler,heun,ab2",
    "--time-grid",
    "uniform,edm",
    "--nfe",
    "2,3",
    "--n",
    "200",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.err);
  const md = readFileSync(join(out, "checkerboard_solvers.md"), "utf8");
  assert.equal(md, r.out.slice(0, md.length), "stdout starts with the table written");
  const rows = md
    .split("\n")
    .filter((l) => /^\| \d+ \|/.test(l))
    .map((l) => l.split("|").map((c) => c.trim().replace(/\*/g, "")));
  const keys = rows.map((c) => `${c[1]} ${c[3]}`);
  // Heun (2 evaluations per step) at NFE 2 is one step: one row whatever the grid; none at NFE 3.
  assert.deepEqual(keys, [
    "2 euler (uniform)",
    "2 euler (edm)",
    "2 heun (uniform)",
    "2 ab2 (uniform)",
    "2 ab2 (edm)",
    "3 euler (uniform)",
    "3 euler (edm)",
    "3 ab2 (uniform)",
    "3 ab2 (edm)",
  ]);
  // Exactly one best row per NFE.
  for (const nfe of ["2", "3"]) assert.equal(md.split("\n").filter((l) => l.startsWith(`| ${nfe} |`) && l.includes("**")).length, 1);
  assert.match(md, /fresh data \(floor\)/);
});

test("compare --time-grid edm runs the GIF comparison on that grid and says so", () => {
  const out = join(shared, "gif");
  const r = runCli([
    "compare",
    "--ckpts",
    ckpt,
    ckpt,
    "--solver",
    "ab2",
    "--time-grid",
    "edm",
    "--nfe",
    "3",
    "--n",
    "200",
    "--density-n",
    "200",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /ab2 solver on the edm time grid/);
  assert.ok(existsSync(join(out, "checkerboard_cfm_vs_reflow.gif")));
});

test("bad solver lists exit 2 naming the fix, before any work, and leave the folder as it was", () => {
  const out = join(shared, "kept");
  const first = runCli(["compare", "--ckpts", ckpt, "--solvers", "ab2", "--nfe", "2", "--n", "200", "--out", out]);
  assert.equal(first.code, 0, first.err);
  const snap = snapshotTree(out);
  const cases: [string[], RegExp][] = [
    [["--solvers", "euler,rk45"], /unknown solver "rk45"; choose one of: .*ab2/],
    [["--solvers", "euler,dopri5"], /dopri5 chooses its own steps/],
    [["--solvers", "heun", "--nfe", "3,5"], /heun makes 2 evaluations per step and can spend none of --nfe 3,5/],
    [["--time-grid", "karras"], /unknown time grid "karras"; choose one of: uniform, shifted, edm/],
    [["--shift", "0"], /--shift.*must be a positive number/],
  ];
  for (const [flags, message] of cases) {
    const r = runCli(["compare", "--ckpts", ckpt, "--solvers", "ab2", "--nfe", "2", "--n", "200", "--out", out, ...flags]);
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.err}`);
    assert.match(r.err.split("\n")[0], message, "the first line names the problem and the fix");
  }
  const dopri = runCli(["compare", "--ckpts", ckpt, ckpt, "--solver", "dopri5", "--time-grid", "edm", "--out", out]);
  assert.equal(dopri.code, 1);
  assert.match(dopri.err, /dopri5 chooses its own steps; drop --time-grid/);
  assertTreeKept(snap, out);
});
