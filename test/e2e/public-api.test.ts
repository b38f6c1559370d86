// The library as `import ... from "flowmatch"` gives it (src/index.ts, src/onnx.ts): what a user can
// reach without internal paths, and the README's list of it. The compiled package is test/e2e/package.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { encodePng } from "../../src/viz/png.js";
import { runCli, tempDir } from "../helpers/cli.js";

const ROOT = join(import.meta.dirname, "..", "..");

/** Every name an entry point exports, values and types, as the TypeScript checker sees them. */
function exportedNames(entries: string[]): Map<string, Set<string>> {
  const program = ts.createProgram(
    entries.map((e) => join(ROOT, e)),
    {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      noEmit: true,
      skipLibCheck: true,
    },
  );
  const checker = program.getTypeChecker();
  const out = new Map<string, Set<string>>();
  for (const e of entries) {
    const source = program.getSourceFile(join(ROOT, e));
    assert.ok(source, e);
    const module = checker.getSymbolAtLocation(source);
    assert.ok(module, e);
    out.set(e, new Set(checker.getExportsOfModule(module).map((s) => s.getName())));
  }
  return out;
}

test("the README's API list names every value the entry points export, and nothing they do not", async () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("### API");
  assert.ok(start >= 0, "README.md has an ### API section");
  const end = readme.indexOf("\n#", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  // Identifiers in backticks (a list item may hold several); flags, commands and paths are not identifiers.
  const listed = new Set([...section.matchAll(/`([A-Za-z_][A-Za-z0-9_]*)`/g)].map((m) => m[1]));

  const exported = exportedNames(["src/index.ts", "src/onnx.ts"]);
  const all = new Set([...exported.values()].flatMap((s) => [...s]));
  const values = new Set([...Object.keys(await import("../../src/index.js")), ...Object.keys(await import("../../src/onnx.js"))]);
  assert.ok(values.size > 50, `only ${values.size} values exported`);

  const unlisted = [...values].filter((n) => !listed.has(n));
  assert.deepEqual(unlisted, [], "exported but missing from the README's API list");
  // The package's own name and JavaScript's built-ins (Float32Array) may be named too.
  const stale = [...listed].filter((n) => !all.has(n) && n !== "flowmatch" && !(n in globalThis));
  assert.deepEqual(stale, [], "listed in the README but not exported");
});

test("image:PATH.png datasets work through the public entry point (its PNG reader is registered)", async () => {
  const { sampleToy, Rng } = await import("../../src/index.js");
  const dir = tempDir("fm-api-");
  try {
    // 8x8 picture, left half black, right half white: every point lands left of x = 0.
    const data = new Uint8Array(8 * 8 * 4).fill(255);
    for (let row = 0; row < 8; row++) for (let col = 0; col < 4; col++) data.fill(0, (row * 8 + col) * 4, (row * 8 + col) * 4 + 3);
    const file = join(dir, "half.png");
    writeFileSync(file, encodePng({ width: 8, height: 8, data }));
    const x = sampleToy(`image:${file}`, 400, new Rng(3));
    assert.equal(x.length, 800);
    for (let i = 0; i < 400; i++) {
      assert.ok(x[2 * i] >= -4 && x[2 * i] <= 0, `point ${i} at x = ${x[2 * i]} is off the black half`);
      assert.ok(x[2 * i + 1] >= -4 && x[2 * i + 1] <= 4);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loadModel from the public entry point samples a CLI-trained model as the package docs show", async () => {
  const { DEFAULT_MLP, initEngine, loadModel, modelField, odeint, Rng, weightsOf } = await import("../../src/index.js");
  const dir = tempDir("fm-api-");
  try {
    const tiny = ["--hidden", "16", "--depth", "1", "--batch-size", "32", "--n", "64", "--nfe", "4", "--frames", "2"];
    const r = runCli(["train2d", "--dataset", "moons", "--steps", "12", "--out", join(dir, "run"), ...tiny], {
      env: { ...process.env, FLOWMATCH_THREADS: "1" },
    });
    assert.equal(r.code, 0, r.err);

    await initEngine();
    const m = await loadModel(join(dir, "run"), { kind: "2d" });
    assert.equal(m.kind, "2d");
    assert.equal(m.config.step, 12);
    assert.equal(m.config.dataset, "moons");
    assert.equal(m.losses.length, 12, "one loss per step taken");
    assert.deepEqual(m.model, { ...DEFAULT_MLP, hidden: 16, depth: 1 });
    assert.equal(weightsOf(m, "ema"), m.ema);

    const shape = m.family.sampleShape(m.model);
    assert.deepEqual(shape, [2]);
    const f = modelField(m.family.model(m.model), m.ema, { sampleShape: shape });
    const { x, nfe } = await odeint(f.field, new Rng(0).normals(50 * shape[0]), { solver: "rk4", nfe: 8 });
    assert.equal(nfe, 8);
    assert.equal(f.evaluations(), 8);
    assert.equal(x.length, 100);
    assert.ok(x.every(Number.isFinite));
    f.dispose();

    await assert.rejects(loadModel(join(dir, "run"), { kind: "image", command: "sample-image" }), /sample-image/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
