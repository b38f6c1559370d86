// The playground on WebGPU, in headless Chromium with SwiftShader (the CPU Vulkan that Debian's
// Chromium ships; `--enable-unsafe-webgpu` gives the page a WebGPU adapter on it). The same work on a
// ?device=wasm page in the same browser is the reference: training, 2-D sampling and image
// generation must agree with it. Then the fallback: a WebGPU that fails to start or fails in a
// kernel (injected into the worker bundle) is reported once and the page carries on with Wasm.
// SwiftShader is a correctness check only: its speed says nothing about a GPU.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { buildWeb } from "../../src/web/build.js";
import { startStaticServer, type StaticServer } from "../../src/cli/commands/serve.js";
import { CHROMIUM, countPixels, playgroundState, write2dCheckpoint, writeImageCheckpoint } from "../helpers/playground.js";

const WEBGPU_FLAGS = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"];
const STEPS = 120;

let tmp: string;
let server: StaticServer;
let browser: Browser;
/** Why WebGPU cannot be tested here, or null when it can. */
let noWebgpu: string | null = null;
const pages: Page[] = [];

before(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`Chromium is not installed at ${CHROMIUM}: run \`apt-get install chromium\` (CI installs it via .ci/run)`);
  tmp = mkdtempSync(join(tmpdir(), "flowmatch-webgpu-"));
  const built = await buildWeb({ outDir: join(tmp, "web") });
  server = await startStaticServer({ root: built.outDir, host: "127.0.0.1", port: 0 });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      ...WEBGPU_FLAGS,
    ],
  });
  const probe = await browser.newPage();
  await probe.goto(server.url);
  const adapter = await probe.evaluate(async () => {
    const a = await navigator.gpu?.requestAdapter();
    return a ? `${a.info.vendor} ${a.info.architecture}` : null;
  });
  await probe.close();
  if (!adapter) noWebgpu = `headless Chromium (${WEBGPU_FLAGS.join(" ")}) offers no WebGPU adapter on this machine`;
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A fresh page on the playground; `inject` runs at the top of the worker bundle (before any engine work). */
async function openPage(device: "webgpu" | "wasm" | "auto", inject = ""): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  pages.push(page);
  const errors: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(msg.text());
  });
  page.on("pageerror", (err) => errors.push(`page error: ${err.message}`));
  // Image generation draws its noise seed from Math.random: fixed, so two pages make the same images.
  await page.addInitScript(() => {
    Math.random = () => 0.25;
  });
  if (inject) {
    await context.route(/\/worker\.js$/, async (route) => {
      const response = await route.fetch();
      await route.fulfill({ response, body: `${inject}\n${await response.text()}` });
    });
  }
  await page.goto(device === "auto" ? server.url : `${server.url}?device=${device}`);
  await page.waitForFunction(() => window.__flowmatch?.state.ready === true, null, { timeout: 60_000 });
  return { page, errors };
}

async function train(page: Page): Promise<number[]> {
  await page.selectOption("#dataset", "8gaussians");
  await page.fill("#steps", String(STEPS));
  await page.selectOption("#hidden", "64");
  await page.fill("#batch-size", "128");
  await page.selectOption("#lr", "0.005");
  await page.selectOption("#solver", "euler");
  await page.fill("#nfe", "10");
  await page.click("#train");
  await page.waitForFunction(() => window.__flowmatch.state.status === "done", null, { timeout: 180_000 });
  const s = await playgroundState(page);
  assert.equal(s.losses.length, STEPS);
  return s.losses;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** RGBA bytes of a canvas. */
async function canvasBytes(page: Page, selector: string): Promise<number[]> {
  return page.evaluate((sel) => {
    const c = document.querySelector(sel) as HTMLCanvasElement;
    return Array.from((c.getContext("2d") as CanvasRenderingContext2D).getImageData(0, 0, c.width, c.height).data);
  }, selector);
}

test("WebGPU (SwiftShader): the page trains like Wasm with the same seed", async (t) => {
  if (noWebgpu) return t.skip(noWebgpu);
  const gpu = await openPage("webgpu");
  const s = await playgroundState(gpu.page);
  assert.equal(s.device, "webgpu");
  assert.match(s.adapter ?? "", /swiftshader/i);
  assert.match(await gpu.page.locator("#engine-badge").innerText(), /^engine: WebGPU · .*swiftshader/i);
  const onGpu = await train(gpu.page);
  const cpu = await openPage("wasm");
  assert.equal((await playgroundState(cpu.page)).device, "wasm");
  const onCpu = await train(cpu.page);

  // Same seed, same batches, same float32 maths in another summation order: the losses agree to
  // rounding that Adam slowly amplifies. Measured here: the largest relative difference over 120
  // steps is 2.9e-5. 1e-3 leaves a 30x margin for other adapters yet is far below the loss's own
  // step-to-step spread (~10%), so a kernel that is wrong anywhere fails this.
  let worst = 0;
  for (let i = 0; i < STEPS; i++) worst = Math.max(worst, Math.abs(onGpu[i] - onCpu[i]) / Math.abs(onCpu[i]));
  assert.ok(Math.abs(onGpu[0] - onCpu[0]) <= 1e-5 * onCpu[0], `first loss ${onGpu[0]} vs ${onCpu[0]}`);
  assert.ok(worst <= 1e-3, `WebGPU and Wasm losses differ by up to ${(100 * worst).toFixed(3)}%`);
  const [first, last] = [mean(onGpu.slice(0, 15)), mean(onGpu.slice(-15))];
  assert.ok(last < 0.8 * first, `loss should drop on WebGPU: ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  process.stdout.write(
    `# browser WebGPU adapter: ${s.adapter}; ${STEPS} steps, loss ${first.toFixed(3)} -> ${last.toFixed(3)}, largest relative difference from Wasm ${worst.toExponential(2)} (a correctness run: SwiftShader is a CPU)\n`,
  );
  assert.deepEqual(gpu.errors, []);
  assert.deepEqual(cpu.errors, []);
});

test("WebGPU (SwiftShader): a 2-D checkpoint samples and an image checkpoint generates like on Wasm", async (t) => {
  if (noWebgpu) return t.skip(noWebgpu);
  const dir2d = join(tmp, "ckpt-2d");
  await write2dCheckpoint(dir2d, 16);
  const dirImg = join(tmp, "ckpt-img");
  await writeImageCheckpoint(dirImg);
  const results: Record<string, { flow: number[]; images: number[]; particles: number }> = {};
  for (const device of ["webgpu", "wasm"] as const) {
    const { page, errors } = await openPage(device);
    assert.equal((await playgroundState(page)).device, device);
    await page.selectOption("#solver", "euler");
    await page.fill("#nfe", "4");
    await page.setInputFiles("#ckpt-input", [join(dir2d, "ckpt.safetensors"), join(dir2d, "ckpt.json")]);
    await page.waitForFunction(() => window.__flowmatch.state.snapshots > 0 && window.__flowmatch.state.checkpoint?.kind === "2d", null, {
      timeout: 60_000,
    });
    await page.evaluate(() => window.__flowmatch.showFrame(-1));
    const particles = await countPixels(page, "#flow-canvas", "particle");
    const flow = await canvasBytes(page, "#flow-canvas");

    await page.setInputFiles("#ckpt-input", [join(dirImg, "ckpt.json"), join(dirImg, "ckpt.safetensors")]);
    await page.waitForFunction(() => window.__flowmatch.state.checkpoint?.kind === "image", null, { timeout: 60_000 });
    await page.selectOption("#image-class", "1");
    await page.fill("#image-count", "3");
    await page.click("#generate");
    await page.waitForFunction(() => window.__flowmatch.state.images.done, null, { timeout: 120_000 });
    const s = await playgroundState(page);
    assert.equal(s.images.step, 4);
    assert.ok((await countPixels(page, "#image-canvas", "bright")) > 100, "generated images are drawn");
    results[device] = { flow, images: await canvasBytes(page, "#image-canvas"), particles };
    assert.deepEqual(errors, []);
  }
  const [g, c] = [results.webgpu, results.wasm];
  assert.ok(g.particles > 300, `samples drawn on WebGPU (${g.particles} red pixels)`);
  // Same noise, same weights: the drawings match. A sample that moved by float32 rounding can land
  // one pixel over, and an 8-bit grey level can round the other way; nothing more. Particles are
  // compared as red-pixel masks (the white background would hide a difference in a byte count).
  assert.equal(g.flow.length, c.flow.length);
  const red = (d: number[], i: number) => d[i] > 150 && d[i] - d[i + 1] > 50 && d[i] - d[i + 2] > 40;
  let [both, either] = [0, 0];
  for (let i = 0; i < g.flow.length; i += 4) {
    const [a, b] = [red(g.flow, i), red(c.flow, i)];
    if (a && b) both++;
    if (a || b) either++;
  }
  const flowDiff = 1 - both / either;
  assert.ok(flowDiff < 0.05, `particle pixels differ: ${(100 * flowDiff).toFixed(2)}% of those drawn on either page`);
  assert.equal(g.images.length, c.images.length);
  const worst = g.images.reduce((m, v, i) => Math.max(m, Math.abs(v - c.images[i])), 0);
  assert.ok(worst <= 2, `generated images differ by up to ${worst} grey levels`);
  process.stdout.write(
    `# browser WebGPU vs Wasm drawings: ${(100 * flowDiff).toFixed(2)}% of particle pixels differ, images by up to ${worst} grey levels\n`,
  );
});

// Runs at the top of the worker bundle: the adapter hands out no device, as when a driver refuses.
const FAIL_START = `GPUAdapter.prototype.requestDevice = function () { return Promise.reject(new Error("injected: the driver refused a device")); };`;
// Every compute pipeline after the first few fails, as a kernel the driver cannot compile would.
const FAIL_KERNEL = `{ let n = 0; const create = GPUDevice.prototype.createComputePipelineAsync;
  GPUDevice.prototype.createComputePipelineAsync = function (d) { return ++n > 3 ? Promise.reject(new Error("injected kernel failure")) : create.call(this, d); }; }`;

test("a WebGPU that fails to start: the page says so once and trains on Wasm", async (t) => {
  if (noWebgpu) return t.skip(noWebgpu);
  const { page } = await openPage("webgpu", FAIL_START);
  const s = await playgroundState(page);
  assert.equal(s.device, "wasm");
  assert.match(s.engineFallback ?? "", /WebGPU did not start on .*swiftshader.*; continuing on Wasm/i);
  assert.match(await page.locator("#error").innerText(), /WebGPU failed[\s\S]*continuing on Wasm/);
  assert.match(await page.locator("#engine-badge").innerText(), /^engine: Wasm/);
  await page.click("#error-close");
  const losses = await train(page);
  assert.ok(mean(losses.slice(-15)) < 0.8 * mean(losses.slice(0, 15)));
  assert.equal(await page.locator("#error").isVisible(), false, "the notice is not repeated");
});

test("a WebGPU kernel that fails mid-training: the page says so once and the run completes on Wasm", async (t) => {
  if (noWebgpu) return t.skip(noWebgpu);
  const { page } = await openPage("webgpu", FAIL_KERNEL);
  assert.equal((await playgroundState(page)).device, "webgpu");
  const losses = await train(page);
  const s = await playgroundState(page);
  assert.equal(s.device, "wasm");
  assert.match(s.engineFallback ?? "", /a WebGPU kernel failed \(Failed to compile shader.*\); continuing on Wasm/);
  assert.match(await page.locator("#engine-badge").innerText(), /^engine: Wasm/);
  assert.equal(s.step, STEPS, "the run started over on Wasm and finished");
  assert.ok(mean(losses.slice(-15)) < 0.8 * mean(losses.slice(0, 15)));
  // Later work stays on Wasm without another notice.
  await page.click("#error-close");
  await page.click("#train");
  await page.waitForFunction((n) => window.__flowmatch.state.status === "done" && window.__flowmatch.state.step === n, 2 * STEPS, {
    timeout: 120_000,
  });
  assert.equal(await page.locator("#error").isVisible(), false);
});

test("auto picks Wasm over a software WebGPU adapter", async (t) => {
  if (noWebgpu) return t.skip(noWebgpu);
  const { page, errors } = await openPage("auto");
  const s = await playgroundState(page);
  assert.equal(s.device, "wasm", "SwiftShader is a fallback adapter: slower than Wasm");
  assert.equal(s.engineFallback, null, "nothing failed, so nothing to say");
  assert.deepEqual(errors, []);
});
