// Bundles the playground (src/web) into static files: index.html, styles.css, main.js (page) and
// worker.js (engine, training, sampling). The page runs the same library code as the CLI; only the
// engine's thread adapter is swapped for the browser's.
// The installed package has no sources to bundle: its build (npm run build) bundles the playground
// once into dist/playground, and buildWeb copies those files. esbuild is only a dev dependency.
import { existsSync } from "node:fs";
import { lstat, mkdir, readFile, readdir, rm, stat } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type * as esbuild from "esbuild";
import { UserError } from "../core/errors.js";
import { writeFileAtomic } from "../io/atomic.js";

const WEB_SRC = dirname(fileURLToPath(import.meta.url));
const STATIC_FILES = ["index.html", "styles.css"];
/** The playground bundled by the package build, next to the compiled modules (dist/playground). */
const PREBUILT_DIR = join(WEB_SRC, "..", "playground");

/**
 * Marks a folder as a playground build and lists the files the build wrote: a later build replaces
 * only those, so the user's own files in the folder (or a folder that was never ours) survive.
 */
export const BUILD_MANIFEST = ".flowmatch-playground.json";
const MANIFEST_FORMAT = "flowmatch-playground";

interface BuildManifest {
  format: typeof MANIFEST_FORMAT;
  version: 1;
  files: string[];
}

export interface WebBuildOptions {
  /** Output folder: new, empty, or a previous build (only the files that build wrote are replaced). */
  outDir: string;
  minify?: boolean;
  sourcemap?: boolean;
}

export interface WebBuildResult {
  outDir: string;
  files: string[];
  ms: number;
}

/**
 * The engine's Node worker_threads adapter is swapped for the browser's Workers. Nothing else is
 * stubbed: the page must not reach file-system code (checkpoints come to it as bytes, see
 * io/checkpointFormat.ts), and with platform "browser" esbuild fails the build on any node: import.
 */
const browserThreads: esbuild.Plugin = {
  name: "flowmatch-browser-threads",
  setup(build) {
    build.onResolve({ filter: /[\\/]threads\.js$/ }, (args) =>
      args.importer.includes(`${join("src", "engine")}`) ? { path: join(WEB_SRC, "browserThreads.ts") } : undefined,
    );
  },
};

/** A plain file name (the build writes a flat folder); anything else in a manifest is ignored. */
function isPlainName(name: unknown): name is string {
  return typeof name === "string" && name !== "" && name !== "." && name !== ".." && basename(name) === name && !name.includes("\\");
}

/**
 * The files a previous build wrote into `outDir` (empty for a new or empty folder). Refuses a file,
 * and a non-empty folder without a readable manifest: it is not ours to write into.
 */
async function previousBuild(outDir: string, shown: string): Promise<Set<string>> {
  const info = await stat(outDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    if (err.code === "ENOTDIR")
      throw new UserError(`--out ${shown} is inside a file, not a folder; pass a folder path, e.g. --out outputs/playground`);
    throw err;
  });
  if (!info) {
    if (await lstat(outDir).catch(() => undefined))
      throw new UserError(`--out ${shown} is a broken symlink; remove it or pass another folder with --out`);
    return new Set();
  }
  if (!info.isDirectory())
    throw new UserError(`--out ${shown} is a file, not a folder; pass a new or empty folder, e.g. --out outputs/playground`);
  const entries = (await readdir(outDir)).filter((name) => name !== BUILD_MANIFEST);
  let manifest: unknown;
  try {
    manifest = JSON.parse(await readFile(join(outDir, BUILD_MANIFEST), "utf8"));
  } catch {
    manifest = undefined;
  }
  const m = manifest as Partial<BuildManifest> | undefined;
  if (m?.format === MANIFEST_FORMAT && Array.isArray(m.files)) return new Set(m.files.filter(isPlainName));
  if (entries.length === 0) return new Set();
  const example = entries.slice(0, 3).join(", ");
  throw new UserError(
    `--out ${shown} holds files that are not a flowmatch playground build ` +
      `(${entries.length} ${entries.length === 1 ? "entry" : "entries"}: ${example}${entries.length > 3 ? ", ..." : ""}); ` +
      `pass a new or empty folder, e.g. --out ${join(shown, "playground")}`,
  );
}

async function writeManifest(outDir: string, files: Iterable<string>): Promise<void> {
  const manifest: BuildManifest = { format: MANIFEST_FORMAT, version: 1, files: [...new Set(files)].sort() };
  await writeFileAtomic(join(outDir, BUILD_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
}

/** The files of the prebuilt playground (those its manifest lists), or undefined when there is none. */
async function prebuiltFiles(): Promise<Map<string, Uint8Array> | undefined> {
  let manifest: Partial<BuildManifest>;
  try {
    manifest = JSON.parse(await readFile(join(PREBUILT_DIR, BUILD_MANIFEST), "utf8")) as Partial<BuildManifest>;
  } catch {
    return undefined;
  }
  if (manifest.format !== MANIFEST_FORMAT || !Array.isArray(manifest.files)) return undefined;
  const files = new Map<string, Uint8Array>();
  for (const name of manifest.files.filter(isPlainName)) files.set(name, await readFile(join(PREBUILT_DIR, name)));
  return files;
}

/** Bundles src/web with esbuild, in memory (a checkout run from its sources). */
async function bundleFiles(outDir: string, opts: WebBuildOptions): Promise<Map<string, Uint8Array>> {
  const esbuild = await import("esbuild");
  const result = await esbuild.build({
    entryPoints: { main: join(WEB_SRC, "main.ts"), worker: join(WEB_SRC, "worker.ts") },
    outdir: outDir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: opts.minify ?? true,
    sourcemap: opts.sourcemap ?? true,
    write: false,
    logLevel: "silent",
    plugins: [browserThreads],
  });
  const outputs = new Map<string, Uint8Array>();
  for (const file of result.outputFiles) outputs.set(relative(outDir, file.path), file.contents);
  for (const name of STATIC_FILES) outputs.set(name, await readFile(join(WEB_SRC, name)));
  return outputs;
}

export async function buildWeb(opts: WebBuildOptions): Promise<WebBuildResult> {
  const started = performance.now();
  const outDir = resolve(opts.outDir);
  const previous = await previousBuild(outDir, opts.outDir);
  // Bundle in memory first: a failed build writes nothing. Sources next to this module (a checkout)
  // are bundled; the compiled package copies its prebuilt bundle.
  const outputs = existsSync(join(WEB_SRC, "main.ts")) ? await bundleFiles(outDir, opts) : await prebuiltFiles();
  if (!outputs)
    throw new Error(
      `the playground bundle is missing from this installation (${PREBUILT_DIR}); reinstall flowmatch, or in a checkout run npm run build`,
    );
  for (const name of outputs.keys()) {
    if (!isPlainName(name)) throw new Error(`playground build produced ${name}, outside a flat folder`);
    // A file the previous build did not write is the user's, even if its name matches ours.
    if (!previous.has(name) && (await lstat(join(outDir, name)).catch(() => undefined))) {
      throw new UserError(
        `--out ${opts.outDir} already holds ${name}, which no playground build wrote; move it or pass another folder with --out`,
      );
    }
  }
  await mkdir(outDir, { recursive: true });
  // Claim the files before writing them, so an interrupted build still knows what it owns.
  await writeManifest(outDir, [...previous, ...outputs.keys()]);
  for (const [name, contents] of outputs) await writeFileAtomic(join(outDir, name), contents);
  // Remove what only an earlier build wrote (plain files only; never follow a link or a folder).
  for (const name of previous) {
    if (outputs.has(name)) continue;
    const info = await lstat(join(outDir, name)).catch(() => undefined);
    if (info?.isFile()) await rm(join(outDir, name));
  }
  await writeManifest(outDir, outputs.keys());
  return { outDir, files: [...outputs.keys()].map((name) => join(outDir, name)), ms: performance.now() - started };
}
