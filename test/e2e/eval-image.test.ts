// The quality score for image models: Fréchet distance against closed forms for Gaussians,
// accuracy counting, and train-classifier + eval-image on a tiny colour dataset through the CLI.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runCli, snapshotTree, tempDir, trainTinyImage } from "../helpers/cli.js";
import { classAccuracy, frechetDistance, frechetDistanceOf, symmetricEigenvalues } from "../../src/core/metrics.js";
import { Rng } from "../../src/core/rng.js";
import { colourFolder } from "../helpers/colour.js";
import { withClassCounts } from "../../src/pipelines/classifier.js";

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

const f64 = (...v: number[]) => Float64Array.from(v);

test("symmetric eigenvalues: a rotated diagonal matrix gives its diagonal back", () => {
  // R diag(1, 4, 9) R^T with R a rotation by 0.3 in the (0, 1) plane and 1.1 in the (1, 2) plane.
  const rot = (a: number, i: number, j: number) => {
    const r = [1, 0, 0, 0, 1, 0, 0, 0, 1];
    r[i * 3 + i] = r[j * 3 + j] = Math.cos(a);
    r[i * 3 + j] = -Math.sin(a);
    r[j * 3 + i] = Math.sin(a);
    return r;
  };
  const mul = (a: number[], b: number[]) =>
    Array.from({ length: 9 }, (_, k) => [0, 1, 2].reduce((s, m) => s + a[Math.floor(k / 3) * 3 + m] * b[m * 3 + (k % 3)], 0));
  const R = mul(rot(0.3, 0, 1), rot(1.1, 1, 2));
  const Rt = [0, 3, 6, 1, 4, 7, 2, 5, 8].map((k) => R[k]);
  const m = mul(mul(R, [1, 0, 0, 0, 4, 0, 0, 0, 9]), Rt);
  const e = [...symmetricEigenvalues(Float64Array.from(m), 3)].sort((a, b) => a - b);
  e.forEach((v, i) => assert.ok(Math.abs(v - [1, 4, 9][i]) < 1e-10, `${v}`));
});

test("Fréchet distance matches closed forms: diagonal, non-commuting 2x2, identical; sampled Gaussians converge", () => {
  // Diagonal: |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
  const d1 = frechetDistance(f64(0, 1, 2), f64(1, 0, 0, 0, 4, 0, 0, 0, 9), f64(1, 1, 0), f64(4, 0, 0, 0, 1, 0, 0, 0, 9));
  assert.ok(Math.abs(d1 - (1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2)) < 1e-9, `${d1}`);
  // 2x2, S1 S2 not symmetric: tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det(S1 S2))).
  const s1 = f64(2, 0.5, 0.5, 1),
    s2 = f64(1, -0.3, -0.3, 3);
  const p = [s1[0] * s2[0] + s1[1] * s2[2], s1[0] * s2[1] + s1[1] * s2[3], s1[2] * s2[0] + s1[3] * s2[2], s1[2] * s2[1] + s1[3] * s2[3]];
  const trSqrt = Math.sqrt(p[0] + p[3] + 2 * Math.sqrt(p[0] * p[3] - p[1] * p[2]));
  const d2 = frechetDistance(f64(0, 0), s1, f64(0.5, 0), s2);
  assert.ok(Math.abs(d2 - (0.25 + 3 + 4 - 2 * trSqrt)) < 1e-9, `${d2}`);
  assert.ok(Math.abs(frechetDistance(f64(1, 2), s1, f64(1, 2), s1)) < 1e-9);
  assert.ok(Math.abs(frechetDistance(f64(0, 0), s2, f64(0.5, 0), s1) - d2) < 1e-9, "symmetric");
  // Samples of N(0, diag(1, 4)) and N((1, 0), diag(1, 1)): distance 1 + (2 - 1)^2 = 2.
  const rng = new Rng(5),
    n = 40000;
  const a = new Float32Array(2 * n),
    b = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    a[2 * i] = rng.normal();
    a[2 * i + 1] = 2 * rng.normal();
    b[2 * i] = 1 + rng.normal();
    b[2 * i + 1] = rng.normal();
  }
  const est = frechetDistanceOf(a, b, 2);
  assert.ok(Math.abs(est - 2) < 0.06, `sampled ${est} vs 2`);
});

test("withClassCounts takes the first images of each class (every second one from a parity) in the samples' counts", () => {
  // Labels in file order; each image's value is its index, so the picked images name themselves.
  const labels = Int32Array.of(0, 0, 1, 0, 1, 1, 1);
  const ds = {
    name: "t",
    images: Float32Array.from(labels, (_, i) => i),
    labels,
    n: labels.length,
    height: 1,
    width: 1,
    channels: 1,
    numClasses: 2,
    classNames: ["a", "b"],
  };
  const first = withClassCounts(ds, [2, 1]);
  assert.deepEqual([...first.images], [0, 1, 2]);
  assert.deepEqual([...first.labels], [0, 0, 1]);
  assert.equal(first.n, 3);
  // Odd occurrences of each class: class 0 at 1, class 1 at 4 and 6; counts cap what is taken.
  assert.deepEqual([...withClassCounts(ds, [2, 1], 1).images], [1, 4]);
  assert.deepEqual([...withClassCounts(ds, [5, 5], 0).images], [0, 2, 3, 5]);
});

test("class accuracy counts rows whose largest logit is the label", () => {
  const logits = Float32Array.from([0.1, 0.9, 0, /**/ 2, 1, 0, /**/ 0, 0, 5, /**/ 1, 3, 2]);
  assert.equal(classAccuracy(logits, Int32Array.from([1, 0, 2, 2])), 0.75);
  assert.equal(classAccuracy(logits, Int32Array.from([0, 1, 0, 0])), 0);
});

test("train-classifier then eval-image on a tiny colour dataset: accuracy, Fréchet distance, floor, settings stated", () => {
  const root = tempDir("fm-eval-");
  roots.push(root);
  const data = colourFolder(root, { perClass: 8 });
  const clf = join(root, "clf");
  const t = runCli([
    "train-classifier",
    "--dataset",
    `folder:${data}`,
    "--channels",
    "4",
    "--groups",
    "4",
    "--feature-dim",
    "4",
    "--batch-size",
    "8",
    "--steps",
    "40",
    "--lr",
    "0.01",
    "--backend",
    "jax",
    "--out",
    clf,
  ]);
  assert.equal(t.code, 0, t.err);
  const cfg = JSON.parse(readFileSync(join(clf, "ckpt.json"), "utf8"));
  assert.deepEqual([cfg.kind, cfg.model.inChannels, cfg.model.numClasses], ["classifier", 3, 2]);
  const model = join(root, "unet");
  trainTinyImage(model, `folder:${data}`, 2);
  const modelFiles = snapshotTree(model);
  const e = runCli([
    "eval-image",
    "--ckpt",
    model,
    "--classifier",
    clf,
    "--per-class",
    "4",
    "--solver",
    "euler",
    "--nfe",
    "2",
    "--guidance",
    "1.5",
    "--runtime",
    "engine",
  ]);
  assert.equal(e.code, 0, e.err);
  assert.match(e.out, /^8 samples \(4 per class\), euler NFE 2, guidance 1\.5, seed 1$/m);
  // Blue separates the two classes exactly: the classifier gets every real image right.
  assert.match(e.out, /the classifier on real test images: 100\.0%/);
  const num = (re: RegExp) => Number(re.exec(e.out)?.[1]);
  const acc = num(/class accuracy of samples: ([\d.]+)%/);
  assert.ok(acc >= 0 && acc <= 100);
  const fd = num(/samples vs real: ([\d.]+)/),
    floor = num(/floor \(two real sets: alternate images of each class of .*, 8 and 8 images\): ([\d.]+)/);
  assert.ok(Number.isFinite(fd) && Number.isFinite(floor) && fd >= 0 && floor >= 0, e.out);
  // Scoring writes nothing: the model's own samples.png and trajectory.gif stay as training left them.
  assert.deepEqual(snapshotTree(model), modelFiles);
  // With --out the scored samples' pictures go there.
  const pics = join(root, "eval-pics");
  const withOut = runCli([
    "eval-image",
    "--ckpt",
    model,
    "--classifier",
    clf,
    "--per-class",
    "1",
    "--nfe",
    "1",
    "--solver",
    "euler",
    "--runtime",
    "engine",
    "--out",
    pics,
  ]);
  assert.equal(withOut.code, 0, withOut.err);
  assert.deepEqual(readdirSync(pics).sort(), ["samples.png", "trajectory.gif"]);
  assert.deepEqual(snapshotTree(model), modelFiles);
  // A classifier of another image size is refused with the fix.
  const other = colourFolder(join(root, "o"), { sizes: [[16, 16]] });
  assert.equal(
    runCli([
      "train-classifier",
      "--dataset",
      `folder:${other}`,
      "--channels",
      "4",
      "--groups",
      "4",
      "--feature-dim",
      "4",
      "--steps",
      "1",
      "--backend",
      "jax",
      "--out",
      join(root, "clf16"),
    ]).code,
    0,
  );
  const bad = runCli(["eval-image", "--ckpt", model, "--classifier", join(root, "clf16"), "--per-class", "1", "--runtime", "engine"]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /classifier takes 16x16x3 images .* the model makes 8x8x3 .*train a classifier on the model's dataset/);
});

test("train-classifier --resize records the transform; eval-image scores a --resize model of mixed-size images with it", () => {
  const root = tempDir("fm-eval-resize-");
  roots.push(root);
  const data = colourFolder(root, {
    perClass: 4,
    sizes: [
      [12, 12],
      [8, 10],
    ],
  });
  const common = ["--dataset", `folder:${data}`, "--groups", "4", "--backend", "jax"];
  // Mixed sizes are refused without a transform, as in train-image.
  const refused = runCli([
    "train-classifier",
    ...common,
    "--channels",
    "4",
    "--feature-dim",
    "4",
    "--steps",
    "1",
    "--out",
    join(root, "x"),
  ]);
  assert.equal(refused.code, 1);
  assert.match(refused.err, /pass --resize N or --center-crop N/);
  const clf = join(root, "clf");
  const t = runCli(["train-classifier", ...common, "--channels", "4", "--feature-dim", "4", "--steps", "2", "--resize", "8", "--out", clf]);
  assert.equal(t.code, 0, t.err);
  const cfg = JSON.parse(readFileSync(join(clf, "ckpt.json"), "utf8"));
  assert.deepEqual([cfg.train.resize, cfg.model.height, cfg.model.width], [8, 8, 8]);
  // --resume checks the transform like the other settings.
  const resumed = runCli([
    "train-classifier",
    ...common,
    "--channels",
    "4",
    "--feature-dim",
    "4",
    "--steps",
    "3",
    "--resize",
    "4",
    "--resume",
    "--out",
    clf,
  ]);
  assert.equal(resumed.code, 1);
  assert.match(resumed.err, /--resize/);
  const model = join(root, "unet");
  trainTinyImage(model, `folder:${data}`, 1, ["--resize", "8"]);
  const e = runCli([
    "eval-image",
    "--ckpt",
    model,
    "--classifier",
    clf,
    "--per-class",
    "2",
    "--solver",
    "euler",
    "--nfe",
    "1",
    "--runtime",
    "engine",
  ]);
  assert.equal(e.code, 0, e.err);
  assert.match(e.out, /floor \(two real sets: alternate images of each class of .*, 4 and 4 images\): [\d.]+/);
});

test("one class: train-classifier asks for --rotations; with it, eval-image reports the fraction seen as upright", () => {
  const root = tempDir("fm-eval-rot-");
  roots.push(root);
  const data = colourFolder(root, { classes: ["only"], perClass: 8 });
  const common = ["--dataset", `folder:${data}`, "--groups", "4", "--backend", "jax"];
  const clfArgs = ["--channels", "4", "--feature-dim", "4", "--batch-size", "8", "--lr", "0.01"];
  const refused = runCli(["train-classifier", ...common, ...clfArgs, "--steps", "1", "--out", join(root, "x")]);
  assert.equal(refused.code, 1);
  assert.match(refused.err, /needs at least 2 classes, folder:.* has 1; for data with one class, pass --rotations/);
  const clf = join(root, "clf");
  const t = runCli(["train-classifier", ...common, ...clfArgs, "--steps", "30", "--rotations", "--out", clf]);
  assert.equal(t.code, 0, t.err);
  const cfg = JSON.parse(readFileSync(join(clf, "ckpt.json"), "utf8"));
  assert.deepEqual([cfg.train.rotations, cfg.model.numClasses, cfg.classNames], [true, 4, ["0°", "90°", "180°", "270°"]]);
  const model = join(root, "unet");
  trainTinyImage(model, `folder:${data}`, 1);
  const e = runCli([
    "eval-image",
    "--ckpt",
    model,
    "--classifier",
    clf,
    "--per-class",
    "4",
    "--solver",
    "euler",
    "--nfe",
    "1",
    "--runtime",
    "engine",
  ]);
  assert.equal(e.code, 0, e.err);
  const m = /seen as upright by the rotation classifier: samples ([\d.]+)%, real test images ([\d.]+)%/.exec(e.out);
  assert.ok(m, e.out);
  assert.ok(Number(m[1]) >= 0 && Number(m[1]) <= 100 && Number(m[2]) >= 0 && Number(m[2]) <= 100);
  assert.match(e.out, /floor \(two real sets: alternate images of each class of .*, 4 and 4 images\): [\d.]+/);
});
