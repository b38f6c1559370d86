// ARCHITECTURE.md's layer rule, checked by dependency-cruiser (.dependency-cruiser.cjs, run as
// `npm run lint:layers`): src keeps it, and each rule fires on a small tree that breaks it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "../helpers/cli.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CONFIG = join(ROOT, ".dependency-cruiser.cjs");
const DEPCRUISE = join(ROOT, "node_modules", "dependency-cruiser", "bin", "dependency-cruise.mjs");

function depcruise(cwd: string): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [DEPCRUISE, "src", "--config", CONFIG, "--output-type", "err"], { cwd, encoding: "utf8" });
  return { code: r.status, out: r.stdout + r.stderr };
}

test("src keeps the layer rule (npm run lint:layers)", () => {
  const r = depcruise(ROOT);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /no dependency violations found/);
});

test("every layer rule fails on a tree that breaks it", () => {
  const dir = tempDir("fm-layers-");
  try {
    const files: Record<string, string> = {
      "src/engine/index.ts": 'import "@jax-js/jax";\nexport const engine = 1;\n',
      // The thread adapter's built-ins are allowed: the browser build swaps this file.
      "src/engine/threads.ts": 'import "node:os";\nexport const threads = 1;\n',
      "src/engine/bad.ts": 'import "../core/ok.js";\n',
      "src/core/ok.ts": 'import "../engine/index.js";\n',
      "src/core/jax.ts": 'import "@jax-js/jax";\n',
      "src/core/up.ts": 'import "../io/disk.js";\n',
      "src/io/disk.ts": 'import "node:fs";\nimport "../core/ok.js";\n',
      "src/io/sideways.ts": 'import "../viz/plot.js";\n',
      "src/viz/plot.ts": 'import "../pipelines/run.js";\n',
      "src/data/set.ts": 'import "../cli/main.js";\n',
      "src/pipelines/run.ts": 'import "../io/disk.js";\n',
      "src/cli/main.ts": 'import "../pipelines/run.js";\n',
      "src/web/main.ts": 'import "./draw.js";\n',
      "src/web/draw.ts": 'import "node:path";\n',
      "src/web/worker.ts": 'import "../engine/threads.js";\nimport "../pipelines/run.js";\nimport "onnxruntime-node";\n',
      "src/web/build.ts": 'import "node:fs";\n',
      "tsconfig.json": JSON.stringify({ compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext" }, include: ["src"] }),
    };
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
    const r = depcruise(dir);
    assert.notEqual(r.code, 0, r.out);
    // A package shows as its resolved file, wherever node_modules really lies.
    const found = new Set(
      [...r.out.matchAll(/error ([a-z-]+): (\S+) → (\S+)/g)].map(
        (m) => `${m[1]}: ${m[2]} → ${m[3].replace(/^.*\/node_modules\//, "node_modules/")}`,
      ),
    );
    const expected = [
      "engine-imports-nothing-of-ours: src/engine/bad.ts → src/core/ok.ts",
      "only-engine-imports-jax: src/core/jax.ts → node_modules/@jax-js/jax/dist/index.js",
      "core-imports-only-engine: src/core/up.ts → src/io/disk.ts",
      "io-imports-only-core-engine: src/io/sideways.ts → src/viz/plot.ts",
      "viz-imports-only-core-engine: src/viz/plot.ts → src/pipelines/run.ts",
      "pipelines-only-from-the-top: src/viz/plot.ts → src/pipelines/run.ts",
      "data-imports-only-core-engine: src/data/set.ts → src/cli/main.ts",
      "cli-web-on-top: src/data/set.ts → src/cli/main.ts",
      "web-imports-no-node-builtins: src/web/draw.ts → path",
      "page-reaches-no-node-code: src/web/main.ts → path",
      "page-reaches-no-node-code: src/web/worker.ts → fs",
      "page-reaches-no-onnxruntime-node: src/web/worker.ts → node_modules/onnxruntime-node/dist/index.js",
    ];
    assert.deepEqual([...found].sort(), expected.sort(), r.out);
    // Not listed, so allowed: web/build.ts (the bundler) importing node:fs, the thread adapter's
    // node:os reached from the page, cli and web importing pipelines, io importing node:fs.
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
