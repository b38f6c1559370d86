// Colour images end to end: folder:DIR keeps colour (grey only when every image is, or --grey),
// old grey checkpoints without a channel field load as one channel, and an RGB model trains (both
// backends), samples with guidance on the engine and onnxruntime, exports, and scores bits/dim over
// all three channels, with colour pictures.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli, tempDir } from "../helpers/cli.js";
import { colourFolder, rgbOf } from "../helpers/colour.js";
import { decodePng } from "../../src/data/png.js";
import { loadImageDataset } from "../../src/data/images.js";
import { loadModel } from "../../src/pipelines/model.js";
import { bitsPerDimImages } from "../../src/pipelines/loglik.js";
import { bitsPerDim } from "../../src/core/likelihood.js";
import { UserError } from "../../src/core/errors.js";

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
function temp(): string {
  const d = tempDir("fm-colour-");
  roots.push(d);
  return d;
}

const unit = (b: number) => (b / 255) * 2 - 1;

test("folder:DIR keeps colour (NHWC, exact values); all-grey folders and --grey give one channel", async () => {
  const root = temp();
  const ds = await loadImageDataset(`folder:${colourFolder(join(root, "c"))}`);
  assert.equal(ds.channels, 3);
  assert.equal(ds.images.length, ds.n * 8 * 8 * 3);
  // Image 5 is class 1 ("yellow"), i = 1; pixel (x=3, y=2).
  const [r, g, b] = rgbOf(1, 1, 3, 2, false);
  const o = (5 * 64 + 2 * 8 + 3) * 3;
  assert.ok(
    Math.abs(ds.images[o] - unit(r)) < 1e-6 && Math.abs(ds.images[o + 1] - unit(g)) < 1e-6 && Math.abs(ds.images[o + 2] - unit(b)) < 1e-6,
  );

  const grey = await loadImageDataset(`folder:${colourFolder(join(root, "g"), { grey: true })}`);
  assert.equal(grey.channels, 1);
  assert.ok(Math.abs(grey.images[5 * 64 + 2 * 8 + 3] - unit(rgbOf(1, 1, 3, 2, true)[0])) < 1e-6);

  const forced = await loadImageDataset(`folder:${join(root, "c", "data")}`, { grey: true });
  assert.equal(forced.channels, 1);
  assert.ok(Math.abs(forced.images[5 * 64 + 2 * 8 + 3] - ((0.299 * r + 0.587 * g + 0.114 * b) / 255) * 2 + 1) < 1e-5);
});

test("an old grey checkpoint without a channel field loads as one channel; a wrong channel count is refused", async () => {
  const root = temp();
  const fixture = join(import.meta.dirname, "..", "fixtures", "ckpt-image-v1");
  cpSync(fixture, join(root, "old"), { recursive: true });
  const cfgPath = join(root, "old", "ckpt.json");
  const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
  delete cfg.model.inChannels;
  writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
  const loaded = await loadModel(join(root, "old"), { kind: "image" });
  assert.equal(loaded.config.model.inChannels, 1);
  cfg.model.inChannels = 3;
  writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
  await assert.rejects(
    loadModel(join(root, "old"), { kind: "image" }),
    (e: unknown) => e instanceof UserError && /stem\.weight/.test(e.message),
  );
});

/** Fraction of pixels whose red, green and blue differ (0 for a grey picture). */
function colourfulness(png: Buffer): number {
  const { data } = decodePng(png);
  let coloured = 0;
  for (let p = 0; p < data.length; p += 4) if (data[p] !== data[p + 1] || data[p + 1] !== data[p + 2]) coloured++;
  return coloured / (data.length / 4);
}

test("RGB through the CLI: train-image on both backends, guided sampling on engine and onnxruntime, export, reflow, bits/dim over 3 channels", async () => {
  const root = temp();
  const data = colourFolder(root);
  const model = [
    "--channels",
    "4,8",
    "--groups",
    "4",
    "--time-emb-dim",
    "4",
    "--batch-size",
    "4",
    "--steps",
    "3",
    "--per-class",
    "2",
    "--nfe",
    "2",
  ];
  for (const backend of ["jax", "ort"]) {
    const out = join(root, backend);
    const r = runCli(["train-image", "--dataset", `folder:${data}`, ...model, "--backend", backend, "--out", out]);
    assert.equal(r.code, 0, r.err);
    const cfg = JSON.parse(readFileSync(join(out, "ckpt.json"), "utf8"));
    assert.equal(cfg.model.inChannels, 3);
    assert.ok(colourfulness(readFileSync(join(out, "samples.png"))) > 0.3, `${backend}: samples.png is in colour`);
  }
  const ckpt = join(root, "ort");
  for (const runtime of ["engine", "onnx"]) {
    const out = join(root, `s-${runtime}`);
    const r = runCli([
      "sample-image",
      "--ckpt",
      ckpt,
      "--runtime",
      runtime,
      "--guidance",
      "2",
      "--per-class",
      "2",
      "--nfe",
      "4",
      "--solver",
      "euler",
      "--out",
      out,
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /sampled 4 images with euler NFE 4 on/);
    assert.ok(colourfulness(readFileSync(join(out, "samples.png"))) > 0.3);
  }
  const onnx = join(root, "m.onnx");
  assert.equal(runCli(["export", "--ckpt", ckpt, "--onnx", onnx]).code, 0);
  assert.match(readFileSync(onnx).toString("latin1"), /stem/);

  const rf = runCli([
    "reflow",
    "--teacher",
    ckpt,
    "--pairs",
    "8",
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--pair-solver",
    "euler",
    "--pair-nfe",
    "2",
    "--out",
    join(root, "reflow"),
  ]);
  assert.equal(rf.code, 0, rf.err);
  assert.equal(
    JSON.parse(readFileSync(join(root, "reflow", "ckpt.json"), "utf8")).model.inChannels,
    3,
    "reflow keeps the teacher's colour",
  );
  assert.ok(colourfulness(readFileSync(join(root, "reflow", "samples.png"))) > 0.3);

  const loaded = await loadModel(ckpt, { kind: "image" });
  const ds = await loadImageDataset(`folder:${data}`, { limit: 2 });
  const r = await bitsPerDimImages(loaded, ds.images, ds.labels, { solver: "dopri5", probes: 1, seed: 0, batch: 2 });
  assert.ok(Math.abs(r.bpd - bitsPerDim(r.mean, 8 * 8 * 3)) < 1e-9, "bits/dim divides by H*W*3");
  assert.ok(r.bpd > 0 && Number.isFinite(r.bpd));
});
