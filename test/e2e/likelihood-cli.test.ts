// `flowmatch loglik` as a user runs it: a mean log-likelihood line, density.png beside the samples,
// CSV input, and clear errors for bad CSV rows and bad flags.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PNG } from "pngjs";
import { runCli as run, trainTiny2d } from "../helpers/cli.js";

test("loglik: mean log p with standard error, density.png, CSV input and input errors", () => {
  const dir = mkdtempSync(join(tmpdir(), "fm-loglik-cli-"));
  try {
    const ckpt = join(dir, "ckpt");
    trainTiny2d(ckpt, 40, { nfe: 8, frames: 3 });

    const pics = join(dir, "pics");
    const fresh = run(["loglik", "--ckpt", ckpt, "--n", "200", "--rtol", "1e-4", "--atol", "1e-4", "--out", pics]);
    assert.equal(fresh.code, 0, fresh.err);
    const m = /log-likelihood of 200 fresh moons points: (-?\d+\.\d+) ± (\d+\.\d+) nats \(exact divergence, dopri5, (\d+) evaluations/.exec(
      fresh.out,
    );
    assert.ok(m, fresh.out);
    assert.ok(Number.isFinite(Number(m[1])) && Number(m[2]) > 0 && Number(m[3]) > 0, fresh.out);
    const png = PNG.sync.read(readFileSync(join(pics, "density.png")));
    assert.ok(png.width > png.height, `heat-map and scatter side by side: ${png.width}x${png.height}`);

    const csv = join(dir, "points.csv");
    writeFileSync(csv, "x,y\n0.0,0.25\n1.0,-0.5\n\n");
    const fromCsv = run(["loglik", "--ckpt", ckpt, "--data", csv, "--no-density", "--solver", "rk4"]);
    assert.equal(fromCsv.code, 0, fromCsv.err);
    assert.match(fromCsv.out, /log-likelihood of 2 .*points\.csv points: -?\d+\.\d+ ± \d+\.\d+ nats \(exact divergence, rk4/);
    assert.ok(!existsSync(join(ckpt, "density.png")), "--no-density writes no picture");

    writeFileSync(csv, "x,y\n0.0,0.25\n1.0,oops\n");
    const bad = run(["loglik", "--ckpt", ckpt, "--data", csv]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /points\.csv:3: expected two numbers "x,y"/);

    const missing = run(["loglik", "--ckpt", ckpt, "--data", join(dir, "nope.csv")]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /cannot read --data .*nope\.csv; pass "fresh" or a CSV file/);

    const probes = run(["loglik", "--ckpt", ckpt, "--probes", "0"]);
    assert.equal(probes.code, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
