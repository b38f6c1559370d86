// The metric set reaches the user the same way everywhere: the quality line after train2d, the
// metrics.json next to the checkpoint and the compare table all come from one qualityReport.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { formatQuality, qualityCells, type QualityReport } from "../../src/core/metrics.js";
import { runCli, tempDir } from "../helpers/cli.js";

const TINY = ["--hidden", "16", "--depth", "1", "--batch-size", "32", "--n", "200", "--nfe", "8", "--frames", "3"];

test("train2d's quality line, metrics.json and the compare table report the same blur-aware metrics", () => {
  const dir = tempDir("fm-metrics-cli-");
  try {
    const trained = runCli(["train2d", "--dataset", "checkerboard", "--steps", "5", "--out", dir, ...TINY]);
    assert.equal(trained.code, 0, trained.err);
    const metrics = JSON.parse(readFileSync(join(dir, "metrics.json"), "utf8")) as QualityReport & { n: number; floors: string };
    assert.equal(metrics.n, 200);
    assert.equal(metrics.precisionRecall?.k, 3);
    assert.equal(metrics.density?.support, "the 8 filled squares of the board");
    assert.equal(metrics.density?.outsideFloor, 0, "fresh checkerboard data is never outside its squares");
    assert.match(metrics.density?.histogram ?? "", /^40x40 bins over \[-4, 4\] x \[-4, 4\]/);
    assert.match(metrics.floors, /fresh data/);
    // After 5 steps the model is still mostly noise: far outside, TV and precision above the floor
    // (200 points in 1,600 bins put even fresh data at TV ~0.78).
    assert.ok(metrics.density!.outside > 0.3 && metrics.density!.tv > metrics.density!.tvFloor + 0.05, JSON.stringify(metrics.density));
    assert.ok(metrics.precisionRecall!.precision < metrics.precisionRecall!.precisionFloor - 0.2, JSON.stringify(metrics.precisionRecall));

    const line = /^quality \(.*\): (.*)$/m.exec(trained.out)?.[1];
    assert.equal(line, formatQuality(metrics), "the printed line is metrics.json, formatted");
    assert.match(
      line ?? "",
      /^outside [\d.]+% \(floor 0\.0%\)  TV [\d.]+ \(floor [\d.]+\)  precision \(k=3\) [\d.]+ \(floor [\d.]+\)  recall \(k=3\) /,
    );

    // The same checkpoint twice: both rows equal; the floor row matches metrics.json (same n).
    const compared = runCli([
      "compare",
      "--ckpts",
      dir,
      dir,
      "--names",
      "A",
      "B",
      "--nfe",
      "8",
      "--solver",
      "rk4",
      "--n",
      "200",
      "--density-n",
      "200",
      "--out",
      join(dir, "cmp"),
    ]);
    assert.equal(compared.code, 0, compared.err);
    const cells = qualityCells(metrics);
    assert.ok(compared.out.includes(`| NFE | model | ${cells.map((c) => c.label).join(" | ")} |`), compared.out);
    assert.ok(compared.out.includes(`| | fresh data (floor) | ${cells.map((c) => c.floor).join(" | ")} |`), compared.out);
    const rowA = /^\| 8 \| A \| (.*) \|$/m.exec(compared.out)?.[1];
    const rowB = /^\| 8 \| B \| (.*) \|$/m.exec(compared.out)?.[1];
    assert.ok(rowA && rowA === rowB, compared.out);
    assert.equal(rowA.split(" | ").length, cells.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
