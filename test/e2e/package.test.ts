// flowmatch as an npm package, the way a user gets it: `npm pack` (its prepack build compiles dist/),
// the tarball installed into an empty project that has no tsx or TypeScript, then the installed
// command and a plain .mjs file that imports the library. Everything else in the suite runs the
// TypeScript sources; this is the test of the compiled package.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { tempDir } from "../helpers/cli.js";

const ROOT = join(import.meta.dirname, "..", "..");
// The Node running this test comes first on PATH, so npm, npx and the installed bin all use it.
const ENV = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`, FLOWMATCH_THREADS: "1" };

function sh(cmd: string, args: string[], cwd: string, timeoutMs = 180_000) {
  const r = spawnSync(cmd, args, { cwd, env: ENV, encoding: "utf8", timeout: timeoutMs });
  return { code: r.status, out: r.stdout ?? "", err: `${r.stderr ?? ""}${r.error ? String(r.error) : ""}` };
}

const LIBRARY_USE = `
import { initEngine, Rng, initMlp, mlpModel, FlowTrainer, DEFAULT_ADAM, sampleToy, getScheduler, getTimeSampler,
  pathCoefficients, modelField, odeint, logLikelihood, loadModel } from "flowmatch";
import { exportMlpOnnx, createOnnxField } from "flowmatch/onnx";

await initEngine();
const cfg = { dim: 2, hidden: 16, depth: 1, timeEmbDim: 8 };
const rng = new Rng(1);
const model = mlpModel(cfg);
const trainer = new FlowTrainer({ model, params: initMlp(cfg, rng), sampleShape: [2], adam: DEFAULT_ADAM, emaDecay: 0.9 });
const path = getScheduler("straight");
const times = getTimeSampler("uniform");
const losses = [];
for (let k = 0; k < 5; k++) {
  const t = times(64, rng);
  losses.push(await trainer.step({ x0: rng.normals(128), x1: sampleToy("moons", 64, rng), t, coef: pathCoefficients(path, t) }));
}
const params = await trainer.hostParams("ema");
trainer.dispose();
const f = modelField(model, params, { sampleShape: [2] });
const sampled = await odeint(f.field, rng.normals(2 * 100), { solver: "euler", nfe: 4 });
const evaluations = f.evaluations();
f.dispose();
const ll = await logLikelihood(model, params, sampleToy("moons", 4, rng), { sampleShape: [2], divergence: "exact", solver: "euler", nfe: 4 });
const host = Object.fromEntries(Object.entries(params).map(([name, p]) => [name, p.data]));
const onnx = await createOnnxField(await exportMlpOnnx(host, cfg), { threads: 1 });
const v = await onnx.run(sampled.x.subarray(0, 2), new Float32Array([0.5]), undefined, [1, 2]);
await onnx.release();
// The checkpoint the installed command trained (./run), loaded and sampled as the README shows.
const m = await loadModel("run", { kind: "2d" });
const mf = modelField(m.family.model(m.model), m.ema, { sampleShape: m.family.sampleShape(m.model) });
const fromRun = await odeint(mf.field, rng.normals(2 * 10), { solver: "euler", nfe: 2 });
mf.dispose();
console.log(JSON.stringify({ steps: trainer.stepCount, losses, n: sampled.x.length, nfe: sampled.nfe, evaluations,
  finite: sampled.x.every(Number.isFinite), logp: Array.from(ll.logp), v: Array.from(v),
  run: { kind: m.kind, step: m.config.step, losses: m.losses.length, nfe: fromRun.nfe, finite: fromRun.x.every(Number.isFinite) } }));
`;

test("npm pack -> install into an empty project without tsx -> the CLI and the library work from dist", { timeout: 600_000 }, () => {
  const work = tempDir("fm-package-");
  try {
    // --ignore-scripts=false: the repository's .npmrc turns scripts off (onnxruntime-node's install
    // script), and prepack is the build a published package gets.
    const packed = sh("npm", ["pack", "--ignore-scripts=false", "--json", "--pack-destination", work], ROOT, 400_000);
    assert.equal(packed.code, 0, `npm pack failed:\n${packed.err}`);
    const info = JSON.parse(packed.out.slice(packed.out.indexOf("["))) as { filename: string; files: { path: string }[] }[];
    const files = info[0].files.map((f) => f.path);
    for (const f of [
      "bin/flowmatch.js",
      "dist/index.js",
      "dist/index.d.ts",
      "dist/index.js.map",
      "dist/onnx.js",
      "dist/cli/bin.js",
      "dist/playground/main.js",
      "dist/playground/index.html",
      "package.json",
      "LICENSE",
      "pytorch/model.py",
      "pytorch/train.py",
    ]) {
      assert.ok(files.includes(f), `the tarball lacks ${f}`);
    }
    const extra = files.filter(
      (f) => !/^(dist\/|pytorch\/(model|train)\.py$|bin\/flowmatch\.js$|package\.json$|README\.md$|LICENSE)/.test(f),
    );
    assert.deepEqual(extra, [], "the tarball ships only dist/, the PyTorch package templates, the bin, package.json and the README");

    // An empty project. --prefer-offline: the npm cache serves what it has (offline machines),
    // the registry the rest (CI). --ignore-scripts skips onnxruntime-node's optional CUDA download.
    const app = join(work, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true, type: "module" }));
    const installed = sh(
      "npm",
      ["install", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund", join(work, info[0].filename)],
      app,
      300_000,
    );
    assert.equal(installed.code, 0, `npm install of the tarball failed:\n${installed.err}`);
    const modules = readdirSync(join(app, "node_modules"));
    assert.ok(modules.includes("flowmatch"));
    for (const dev of ["tsx", "typescript", "esbuild", "typedoc", "@biomejs"])
      assert.ok(!modules.includes(dev), `${dev} was installed with the package: it must be a dev dependency`);

    const help = sh("npx", ["--no-install", "flowmatch", "--help"], app);
    assert.equal(help.code, 0, help.err);
    assert.match(help.out, /Usage: flowmatch/);
    assert.match(help.out, /train2d/);
    const version = sh("npx", ["--no-install", "flowmatch", "--version"], app);
    assert.equal(version.code, 0, version.err);
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    assert.equal(version.out, `${pkg.version}\n`, "--version prints the installed package's version");

    const tiny = ["--hidden", "16", "--depth", "1", "--batch-size", "32", "--n", "200", "--nfe", "8", "--frames", "3"];
    const train = sh("npx", ["--no-install", "flowmatch", "train2d", "--dataset", "moons", "--steps", "50", "--out", "run", ...tiny], app);
    assert.equal(train.code, 0, `train2d failed:\n${train.err}`);
    const config = JSON.parse(readFileSync(join(app, "run", "ckpt.json"), "utf8")) as { step?: number };
    assert.equal(config.step, 50, "the checkpoint records the 50 steps taken");
    assert.ok(existsSync(join(app, "run", "ckpt.safetensors")));

    // The playground ships prebuilt: serve copies it, no bundler needed.
    const web = sh("npx", ["--no-install", "flowmatch", "serve", "--build-only", "--out", "web"], app);
    assert.equal(web.code, 0, web.err);
    for (const f of ["index.html", "main.js", "worker.js", "styles.css"])
      assert.ok(existsSync(join(app, "web", f)), `serve --build-only did not write ${f}`);

    writeFileSync(join(app, "use.mjs"), LIBRARY_USE);
    const used = sh(process.execPath, ["use.mjs"], app);
    assert.equal(used.code, 0, `the library script failed:\n${used.err}`);
    const r = JSON.parse(used.out.trim().split("\n").at(-1) ?? "") as {
      steps: number;
      losses: number[];
      n: number;
      nfe: number;
      evaluations: number;
      finite: boolean;
      logp: number[];
      v: number[];
      run: { kind: string; step: number; losses: number; nfe: number; finite: boolean };
    };
    assert.equal(r.steps, 5);
    assert.equal(r.losses.length, 5);
    assert.ok(
      r.losses.every((l) => Number.isFinite(l) && l > 0),
      `losses ${r.losses}`,
    );
    assert.equal(r.n, 200);
    assert.equal(r.nfe, 4, "Euler with NFE 4 makes 4 evaluations");
    assert.equal(r.evaluations, 4);
    assert.ok(r.finite);
    assert.equal(r.logp.length, 4);
    assert.ok(r.logp.every(Number.isFinite));
    assert.equal(r.v.length, 2);
    assert.deepEqual(r.run, { kind: "2d", step: 50, losses: 50, nfe: 2, finite: true }, "loadModel reads the 50-step run train2d wrote");

    // Internals are not importable: the exports map lists the public entry points only.
    writeFileSync(join(app, "deep.mjs"), 'await import("flowmatch/dist/core/rng.js");');
    const deep = sh(process.execPath, ["deep.mjs"], app);
    assert.notEqual(deep.code, 0);
    assert.match(deep.err, /ERR_PACKAGE_PATH_NOT_EXPORTED/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
