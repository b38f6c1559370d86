// Bundles the playground (src/web) into static files: index.html, styles.css, main.js (page) and
// worker.js (engine, training, sampling). Node-only modules the core imports are swapped for
// browser stand-ins here, so the page runs the same library code as the CLI.
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const WEB_SRC = dirname(fileURLToPath(import.meta.url));
const STATIC_FILES = ["index.html", "styles.css"];

export interface WebBuildOptions {
  /** Output folder (created; previous contents removed). */
  outDir: string;
  minify?: boolean;
  sourcemap?: boolean;
}

export interface WebBuildResult {
  outDir: string;
  files: string[];
  ms: number;
}

/** Browser stand-ins for the Node built-ins reachable from the core library. */
const browserShims: esbuild.Plugin = {
  name: "flowmatch-browser-shims",
  setup(build) {
    // The engine's Node worker_threads adapter: browsers have real Workers.
    build.onResolve({ filter: /[\\/]threads\.js$/ }, (args) =>
      args.importer.includes(`${join("src", "engine")}`) ? { path: join(WEB_SRC, "browserThreads.ts") } : undefined,
    );
    build.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: "node-shim" }));
    build.onLoad({ filter: /.*/, namespace: "node-shim" }, (args) => {
      // safetensors checks the host byte order; every browser engine is little-endian.
      if (args.path === "node:os") return { contents: 'export function endianness() { return "LE"; }\nexport default { endianness };', loader: "js" };
      // File and hash helpers of the checkpoint module (loadCheckpoint/saveCheckpoint) are never
      // called in the page; it reads dropped files itself. An empty module keeps the import valid.
      return { contents: "module.exports = {};", loader: "js" };
    });
  },
};

export async function buildWeb(opts: WebBuildOptions): Promise<WebBuildResult> {
  const started = performance.now();
  const outDir = resolve(opts.outDir);
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const result = await esbuild.build({
    entryPoints: { main: join(WEB_SRC, "main.ts"), worker: join(WEB_SRC, "worker.ts") },
    outdir: outDir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: opts.minify ?? true,
    sourcemap: opts.sourcemap ?? true,
    metafile: true,
    logLevel: "silent",
    plugins: [browserShims],
  });
  const files = Object.keys(result.metafile.outputs).map((f) => resolve(f));
  for (const name of STATIC_FILES) {
    await copyFile(join(WEB_SRC, name), join(outDir, name));
    files.push(join(outDir, name));
  }
  return { outDir, files, ms: performance.now() - started };
}
