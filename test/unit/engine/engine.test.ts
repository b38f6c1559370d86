// The worker-thread pool adapter (src/engine/threads.ts) must not change results and must not keep
// the process alive. jax-js picks its thread pool when it loads, so each configuration runs in its
// own child process: this file re-runs itself with FLOWMATCH_ENGINE_TEST_CHILD set.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { threadsFromEnv } from "../../../src/engine/threads.js";

interface ChildReport {
  threads: number;
  /** Workers jax-js constructed through the adapter (its pool size; 0 when the adapter is off). */
  workers: number;
  a: number[];
  b: number[];
  matmul: number[];
  grads: number[];
}

async function childMain(): Promise<void> {
  // Count the workers jax-js builds: its pool size comes from navigator.hardwareConcurrency, which
  // Node 21+ defines as a getter, so this checks the adapter really set it. The static import of
  // threads.js above has installed the adapter; jax-js loads with the engine below.
  const g = globalThis as { Worker?: new (url: string | URL, options?: { type?: string }) => object };
  let workers = 0;
  if (g.Worker) {
    const Base = g.Worker;
    g.Worker = class extends Base {
      constructor(url: string | URL, options?: { type?: string }) {
        super(url, options);
        workers++;
      }
    };
  }
  const { initEngine, engineThreadCount, jit, np, nn, random, valueAndGrad, toHost } = await import("../../../src/engine/index.js");
  type Arr = ReturnType<typeof np.zeros>;
  await initEngine();
  // Odd sizes so the row chunks handed to the threads are uneven.
  const a = random.normal(random.key(1), [300, 200]);
  const b = random.normal(random.key(2), [200, 260]);
  const aHost = [...(await toHost(a.ref))];
  const bHost = [...(await toHost(b.ref))];
  const matmul = await toHost(jit((x: Arr, y: Arr) => np.dot(x, y))(a, b));

  const sizes = [3, 64, 64, 2];
  const params: Arr[] = [];
  for (let i = 0; i < 3; i++) {
    params.push(random.normal(random.key(10 + i), [sizes[i], sizes[i + 1]]).mul(1 / Math.sqrt(sizes[i])));
    params.push(random.normal(random.key(20 + i), [sizes[i + 1]]).mul(0.1));
  }
  const x = random.normal(random.key(30), [128, 3]);
  const y = random.normal(random.key(31), [128, 2]);
  const loss = (p: Arr[], xs: Arr, ys: Arr): Arr => {
    let h = xs;
    for (let i = 0; i < 3; i++) {
      h = np.dot(h, p[2 * i]).add(p[2 * i + 1]);
      if (i < 2) h = nn.silu(h);
    }
    return np.mean(np.square(h.sub(ys)));
  };
  const [value, grads] = jit((p: Arr[], xs: Arr, ys: Arr) => valueAndGrad(loss)(p, xs, ys))(params, x, y) as [Arr, Arr[]];
  const flat = [...(await toHost(value))];
  for (const g of grads) flat.push(...(await toHost(g)));
  const report: ChildReport = { threads: engineThreadCount(), workers, a: aHost, b: bHost, matmul: [...matmul], grads: flat };
  process.stdout.write(JSON.stringify(report));
  // No process.exit: the test checks that the pool lets the process end by itself.
}

function runChild(threads: string): Promise<{ report: ChildReport; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url)], {
      env: { ...process.env, FLOWMATCH_ENGINE_TEST_CHILD: "1", FLOWMATCH_THREADS: threads },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`child (FLOWMATCH_THREADS=${threads}) did not exit within 30 s; stderr: ${err}`));
    }, 30_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`child (FLOWMATCH_THREADS=${threads}) exited with ${code}: ${err}`));
      else resolve({ report: JSON.parse(out) as ChildReport, ms: performance.now() - start });
    });
  });
}

function assertClose(actual: number[], expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const tol = 1e-6 * Math.max(1, Math.abs(expected[i]));
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

if (process.env.FLOWMATCH_ENGINE_TEST_CHILD === "1") {
  await childMain();
} else {
  test("thread pool gives the same matmul and MLP gradients as one thread, and exits by itself", async () => {
    const single = await runChild("1");
    // 3 (not the core count) so a pool that silently fell back to the machine's size would show.
    const pooled = await runChild("3");
    assert.equal(single.report.threads, 1);
    assert.equal(single.report.workers, 0);
    assert.equal(pooled.report.threads, 3);
    assert.equal(pooled.report.workers, 3);
    assert.equal(single.report.matmul.length, 300 * 260);
    assert.ok(single.report.grads.every(Number.isFinite));
    assertClose(pooled.report.matmul, single.report.matmul, "matmul");
    assertClose(pooled.report.grads, single.report.grads, "loss and gradients");
    // Spot-check the matmul itself against float64 on the host.
    const { a, b, matmul } = single.report;
    for (const [i, j] of [
      [0, 0],
      [299, 259],
      [150, 7],
      [37, 130],
    ]) {
      let sum = 0;
      for (let k = 0; k < 200; k++) sum += a[i * 200 + k] * b[k * 260 + j];
      assert.ok(Math.abs(matmul[i * 260 + j] - sum) < 1e-4, `matmul[${i},${j}] ${matmul[i * 260 + j]} vs ${sum}`);
    }
  });

  test("FLOWMATCH_THREADS is parsed strictly", () => {
    assert.equal(threadsFromEnv({}), undefined);
    assert.equal(threadsFromEnv({ FLOWMATCH_THREADS: "" }), undefined);
    assert.equal(threadsFromEnv({ FLOWMATCH_THREADS: "3" }), 3);
    assert.throws(() => threadsFromEnv({ FLOWMATCH_THREADS: "0" }), /positive integer/);
    assert.throws(() => threadsFromEnv({ FLOWMATCH_THREADS: "two" }), /positive integer/);
  });
}
