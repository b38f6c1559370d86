// The browser playground as a person meets it: build the page, serve it (COOP/COEP for Wasm threads),
// open it in headless Chromium, train a few steps in the page's worker, load checkpoints the CLI
// writes, and get clear messages for bad files. Also checks the static server on its own.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { buildWeb } from "../../src/web/build.js";
import { registerServeCommand, startStaticServer, type StaticServer } from "../../src/cli/commands/serve.js";
import type { MlpConfig } from "../../src/core/models/mlp.js";
import {
  CHROMIUM,
  countPixels as countPixelsOn,
  playgroundState as statusOf,
  write2dCheckpoint,
  writeImageCheckpoint,
} from "../helpers/playground.js";

const ROOT = join(import.meta.dirname, "..", "..");
const OUT = join(ROOT, "test-output");

let tmp: string;
let server: StaticServer;
let context: BrowserContext;
let page: Page;
const consoleErrors: string[] = [];

const playgroundState = () => statusOf(page);
const countPixels = (selector: string, kind: "particle" | "bright" | "colour") => countPixelsOn(page, selector, kind);

async function errorBanner(): Promise<string> {
  await page.locator("#error").waitFor({ state: "visible", timeout: 15_000 });
  return (await page.locator("#error").innerText()).trim();
}

async function dismissError(): Promise<void> {
  await page.click("#error-close");
}

function fileOf(name: string, buffer: Buffer, mimeType = "application/octet-stream") {
  return { name, mimeType, buffer };
}

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM}; the browser playground test needs it: run \`apt-get install chromium\` (CI installs it via .ci/run)`,
    );
  }
  tmp = mkdtempSync(join(tmpdir(), "flowmatch-web-"));
  mkdirSync(OUT, { recursive: true });
  const built = await buildWeb({ outDir: join(tmp, "web") });
  server = await startStaticServer({ root: built.outDir, host: "127.0.0.1", port: 0 });
  context = await chromium.launchPersistentContext(join(tmp, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(msg.text());
  });
  page.on("pageerror", (err) => consoleErrors.push(`page error: ${err.message}`));
});

after(async () => {
  await context?.close();
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("server: MIME types, COOP/COEP headers, 404 and no escape from the build folder", async () => {
  const html = await fetch(server.url);
  assert.equal(html.status, 200);
  assert.match(html.headers.get("content-type") ?? "", /^text\/html/);
  assert.equal(html.headers.get("cross-origin-opener-policy"), "same-origin");
  assert.equal(html.headers.get("cross-origin-embedder-policy"), "require-corp");
  const js = await fetch(new URL("worker.js", server.url));
  assert.match(js.headers.get("content-type") ?? "", /^text\/javascript/);
  assert.equal(js.headers.get("cross-origin-embedder-policy"), "require-corp");
  assert.match((await fetch(new URL("styles.css", server.url))).headers.get("content-type") ?? "", /^text\/css/);
  assert.equal((await fetch(new URL("missing.js", server.url))).status, 404);
  const escape = await fetch(new URL("/%2e%2e/%2e%2e/package.json", server.url));
  assert.ok(escape.status === 403 || escape.status === 404, `traversal answered ${escape.status}`);
});

test("flowmatch serve --build-only writes the static playground", async () => {
  const program = new Command().exitOverride();
  registerServeCommand(program);
  const out = join(tmp, "built-by-cli");
  await program.parseAsync(["node", "flowmatch", "serve", "--build-only", "--out", out]);
  for (const name of ["index.html", "styles.css", "main.js", "worker.js"])
    assert.ok(existsSync(join(out, name)), `${name} missing from ${out}`);
  // The worker bundle runs in a browser: no Node built-ins may leak into it.
  const worker = await readFile(join(out, "worker.js"), "utf8");
  assert.doesNotMatch(worker, /worker_threads|process\.env/);
});

test("page loads, starts the engine cross-origin isolated, and training lowers the loss", async () => {
  await page.goto(server.url);
  await page.waitForFunction(() => window.__flowmatch?.state.ready === true, null, { timeout: 30_000 });
  let s = await playgroundState();
  assert.ok(s.crossOriginIsolated, "COOP/COEP should make the worker cross-origin isolated (SharedArrayBuffer)");
  assert.ok(["wasm", "webgpu"].includes(s.device));

  const steps = 400;
  await page.selectOption("#dataset", "8gaussians");
  await page.fill("#steps", String(steps));
  await page.selectOption("#hidden", "64");
  await page.fill("#batch-size", "128");
  await page.selectOption("#lr", "0.005");
  await page.selectOption("#solver", "euler");
  await page.fill("#nfe", "10");
  await page.click("#train");
  await page.waitForFunction(() => window.__flowmatch.state.status === "done", null, { timeout: 40_000 });
  s = await playgroundState();
  assert.equal(s.losses.length, steps);
  assert.equal(s.step, steps);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const first = mean(s.losses.slice(0, 15));
  const last = mean(s.losses.slice(-15));
  assert.ok(last < 0.8 * first, `loss should drop: first 15 steps ${first.toFixed(3)}, last 15 ${last.toFixed(3)}`);
  assert.ok(s.stepsPerSecond > 0);
  assert.ok(
    s.snapshots >= 1 && s.lastSnapshot?.step === steps,
    `snapshot of the final weights expected, got ${JSON.stringify(s.lastSnapshot)}`,
  );
  assert.match(s.lastSnapshot?.label ?? "", /euler, NFE 10/);

  await page.evaluate(() => window.__flowmatch.showFrame(-1));
  const red = await countPixels("#flow-canvas", "particle");
  assert.ok(red > 300, `particles should be drawn on the flow canvas (${red} red pixels)`);
  await page.screenshot({ path: join(OUT, "playground.png"), fullPage: true });
  process.stdout.write(
    `# browser worker: ${s.device}, ${s.threads} threads, ${s.stepsPerSecond.toFixed(1)} steps/s (hidden 64, depth 3, batch 128); loss ${first.toFixed(3)} -> ${last.toFixed(3)}\n`,
  );
  assert.deepEqual(consoleErrors, [], "the page should log no console errors");
});

test("bad files get a clear message on the page", async () => {
  const good = join(tmp, "ckpt-a");
  const other = join(tmp, "ckpt-b");
  await write2dCheckpoint(good, 16);
  await write2dCheckpoint(other, 8);
  const json = await readFile(join(good, "ckpt.json"));
  const weights = await readFile(join(good, "ckpt.safetensors"));

  await page.setInputFiles("#ckpt-input", [fileOf("notes.txt", Buffer.from("hello"), "text/plain")]);
  assert.match(await errorBanner(), /"notes\.txt" is not a checkpoint file/);
  await dismissError();

  const corrupt = Buffer.from(weights);
  corrupt.writeBigUInt64LE(10_000_000n, 0); // header length beyond the end of the file
  await page.setInputFiles("#ckpt-input", [fileOf("ckpt.safetensors", corrupt), fileOf("ckpt.json", json, "application/json")]);
  assert.match(await errorBanner(), /ckpt\.safetensors" is corrupt: header says 10000000 bytes/);
  await dismissError();

  await page.setInputFiles("#ckpt-input", [fileOf("ckpt.json", json, "application/json")]);
  assert.match(await errorBanner(), /also choose the ckpt\.safetensors/);
  await dismissError();

  // Weights of one run with the config of another: the recorded sha256 gives it away.
  await page.setInputFiles("#ckpt-input", [
    fileOf("ckpt.safetensors", await readFile(join(other, "ckpt.safetensors"))),
    fileOf("ckpt.json", json, "application/json"),
  ]);
  assert.match(await errorBanner(), /do not belong to this config "ckpt\.json"/);
  await dismissError();

  // A hand-edited config whose model no longer fits the weights.
  const edited = JSON.parse(json.toString("utf8")) as Record<string, unknown> & { model: MlpConfig };
  delete edited.weightsSha256;
  edited.model.hidden = 32;
  await page.setInputFiles("#ckpt-input", [
    fileOf("ckpt.safetensors", weights),
    fileOf("ckpt.json", Buffer.from(JSON.stringify(edited)), "application/json"),
  ]);
  const message = await errorBanner();
  assert.match(message, /does not match the weights/);
  assert.match(message, /layers\.0\.weight is \[10, 16\] in the checkpoint, the model needs \[10, 32\]/);
  await dismissError();
  assert.deepEqual(consoleErrors, [], "bad files are reported on the page, not in the console");
});

test("a 2-D checkpoint from the CLI shows its samples; an image checkpoint forms images step by step", async () => {
  const dir2d = join(tmp, "ckpt-2d");
  await write2dCheckpoint(dir2d, 16);
  const before2d = (await playgroundState()).snapshots;
  await page.setInputFiles("#ckpt-input", [join(dir2d, "ckpt.safetensors"), join(dir2d, "ckpt.json")]);
  await page.waitForFunction(
    (n) => window.__flowmatch.state.snapshots > n && window.__flowmatch.state.checkpoint?.kind === "2d",
    before2d,
    { timeout: 20_000 },
  );
  let s = await playgroundState();
  assert.match(s.checkpoint?.summary ?? "", /moons · straight path · MLP 2×16 · step 20/);
  assert.equal(s.losses.length, 20, "the checkpoint's loss log is plotted");
  assert.match(await page.locator("#ckpt-status").innerText(), /Loaded: 2-D model/);
  assert.equal(await page.locator("#error").isVisible(), false);
  await page.evaluate(() => window.__flowmatch.showFrame(-1));
  assert.ok((await countPixels("#flow-canvas", "particle")) > 300);

  const dirImg = join(tmp, "ckpt-img");
  await writeImageCheckpoint(dirImg);
  await page.setInputFiles("#ckpt-input", [join(dirImg, "ckpt.json"), join(dirImg, "ckpt.safetensors")]);
  await page.waitForFunction(() => window.__flowmatch.state.checkpoint?.kind === "image", null, { timeout: 20_000 });
  assert.equal(await page.locator("#image-panel").isVisible(), true);
  assert.deepEqual(await page.locator("#image-class option").allInnerTexts(), ["all classes (one each)", "0: zero", "1: one", "2: two"]);
  await page.selectOption("#solver", "euler");
  await page.fill("#nfe", "4");
  await page.selectOption("#image-class", "1");
  await page.fill("#image-count", "3");
  await page.click("#generate");
  await page.waitForFunction(() => window.__flowmatch.state.images.done, null, { timeout: 30_000 });
  s = await playgroundState();
  assert.equal(s.images.step, 4, "every solver step is drawn");
  assert.equal(s.images.nfe, 4);
  assert.ok((await countPixels("#image-canvas", "bright")) > 100, "generated images are drawn");
  assert.equal(await countPixels("#image-canvas", "colour"), 0, "a grey model draws grey tiles");

  // A colour checkpoint: fresh weights (v = 0) leave the colour noise, drawn in colour.
  const dirRgb = join(tmp, "ckpt-rgb");
  await writeImageCheckpoint(dirRgb, 3);
  await page.setInputFiles("#ckpt-input", [join(dirRgb, "ckpt.json"), join(dirRgb, "ckpt.safetensors")]);
  await page.waitForFunction(() => window.__flowmatch.state.checkpoint?.summary?.startsWith("tiny-rgb") === true, null, {
    timeout: 20_000,
  });
  await page.click("#generate");
  await page.waitForFunction(() => window.__flowmatch.state.images.done, null, { timeout: 30_000 });
  assert.ok((await countPixels("#image-canvas", "colour")) > 100, "colour images are drawn in colour");
  assert.deepEqual(consoleErrors, []);
});
