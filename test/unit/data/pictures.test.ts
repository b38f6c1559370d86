// Picture-shaped and mixture 2-D datasets: points fall only where the picture is dark, in
// proportion to its darkness; words land on the font's lit pixels; the mixture has its moments;
// bad specs are refused naming the fix; `flowmatch datasets --preview` and training on a word.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseToyDataset, sampleToy, TOY_DATASETS } from "../../../src/data/toy2d.js";
import "../../../src/data/pictureFiles.js";
import { MIXTURE_COMPONENTS, textBitmap } from "../../../src/data/pictures.js";
import { encodePng } from "../../../src/viz/png.js";
import { Rng } from "../../../src/core/rng.js";
import { UserError } from "../../../src/core/errors.js";
import { assertTreeKept, runCli, snapshotTree, tempDir, trainTiny2d } from "../../helpers/cli.js";

/** A w x h RGBA PNG from grey levels (0 = black, 255 = white), row-major from the top. */
function greyPng(path: string, w: number, h: number, grey: number[]): void {
  const data = new Uint8ClampedArray(4 * w * h);
  grey.forEach((g, p) => data.set([g, g, g, 255], 4 * p));
  writeFileSync(path, encodePng({ width: w, height: h, data }));
}

test("image:PATH.png draws points with density proportional to darkness, fitted into [-4, 4]^2", () => {
  const dir = tempDir();
  try {
    // 4 x 2 pixels: top row black, 50% grey, white, white; bottom row white. Longer side 4 px -> 2 units a pixel.
    const png = join(dir, "pic.png");
    greyPng(png, 4, 2, [0, 128, 255, 255, 255, 255, 255, 255]);
    const n = 20000;
    const x = sampleToy(parseToyDataset(`image:${png}`), n, new Rng(1));
    let black = 0;
    for (let i = 0; i < n; i++) {
      const [px, py] = [x[2 * i], x[2 * i + 1]];
      // The picture spans x in [-4, 4], y in [-2, 2]; the top row is y in [0, 2].
      assert.ok(py >= 0 && py <= 2 && px >= -4 && px <= 0, `point ${px}, ${py} outside the dark pixels`);
      if (px < -2) black++;
    }
    // Weights 1 - luminance: black 1, grey 1 - 128/255; black's share = 1 / (1 + 127/255).
    const p = 1 / (1 + 127 / 255);
    assert.ok(Math.abs(black / n - p) < 4 * Math.sqrt((p * (1 - p)) / n), `black share ${black / n} vs ${p}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("text:WORD puts every point on a lit pixel of the built-in font, every lit pixel used", () => {
  const word = "Hi!";
  const bm = textBitmap(word);
  const n = 5000;
  const x = sampleToy(parseToyDataset(`text:${word}`), n, new Rng(2));
  const scale = 8 / Math.max(bm.width, bm.height);
  const hits = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const col = Math.floor(x[2 * i] / scale + bm.width / 2);
    const row = Math.floor(bm.height / 2 - x[2 * i + 1] / scale);
    const p = row * bm.width + col;
    assert.equal(bm.weights[p], 1, `point ${i} at pixel (${col}, ${row}) is not lit`);
    hits.set(p, (hits.get(p) ?? 0) + 1);
  }
  const lit = bm.weights.filter((w) => w > 0).length;
  assert.equal(hits.size, lit, "every lit pixel receives points");
  assert.equal(parseToyDataset("text:Hi!"), "text:Hi!", "the word keeps its case");
});

test("mixture has the mean of its components; picture and text specs are checked", () => {
  assert.ok(TOY_DATASETS.includes("mixture"));
  const n = 40000;
  const x = sampleToy("mixture", n, new Rng(3));
  const want = [MIXTURE_COMPONENTS.reduce((s, c) => s + c.w * c.mx, 0), MIXTURE_COMPONENTS.reduce((s, c) => s + c.w * c.my, 0)];
  for (let d = 0; d < 2; d++) {
    let m = 0;
    for (let i = 0; i < n; i++) m += x[2 * i + d] / n;
    assert.ok(Math.abs(m - want[d]) < 0.05, `mean ${d}: ${m} vs ${want[d]}`);
  }
  const isUserError = (re: RegExp) => (e: unknown) => e instanceof UserError && re.test(e.message);
  assert.throws(() => parseToyDataset("image:logo.jpg"), isUserError(/must name a \.png file/));
  assert.throws(() => parseToyDataset("text:"), isUserError(/needs a word of 1 to 32 characters/));
  assert.throws(() => parseToyDataset("text:héllo"), isUserError(/characters the built-in font cannot draw/));
  assert.throws(
    () => sampleToy(parseToyDataset("image:/nonexistent/x.png"), 10, new Rng(0)),
    isUserError(/cannot read image:\/nonexistent\/x\.png \(ENOENT\)/),
  );
  assert.throws(() => parseToyDataset("mixtur"), isUserError(/did you mean "mixture".*image:PATH\.png, text:WORD/));
});

test("flowmatch datasets lists the sets and --preview writes one PNG each; train2d takes a word", () => {
  const dir = tempDir();
  try {
    const prev = join(dir, "prev");
    const r = runCli(["datasets", "--preview", prev, "--n", "500", "text:HI"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^checkerboard\n[\s\S]*mixture\nimage:PATH\.png\ntext:WORD\n/);
    assert.deepEqual(readdirSync(prev).sort(), [...TOY_DATASETS.map((d) => `${d}.png`), "text_HI.png"].sort());
    const white = join(dir, "white.png");
    greyPng(white, 2, 2, [255, 255, 255, 255]);
    const before = snapshotTree(dir);
    const blank = runCli(["datasets", "--preview", prev, `image:${white}`]);
    assert.equal(blank.code, 1);
    assert.match(blank.err, /has no dark pixels to draw points from/);
    const jpg = runCli(["train2d", "--dataset", "image:x.jpg", "--out", join(dir, "t")]);
    assert.equal(jpg.code, 2);
    assert.match(jpg.err, /must name a \.png file/);
    assertTreeKept(before, dir);
    const out = join(dir, "word");
    trainTiny2d(out, 20, { dataset: "text:HI" });
    assert.ok(existsSync(join(out, "samples.png")));
    // The picture sets are reachable from the browser bundle: it must still build without fs/pngjs.
    const web = runCli(["serve", "--build-only", "--out", join(dir, "web")]);
    assert.equal(web.code, 0, web.err);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
