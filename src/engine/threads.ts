// A browser-style `Worker` global for Node, so @jax-js/jax's Wasm backend splits kernels across
// cores. jax-js decides at import time (when it builds the Wasm backend and its shared memory)
// whether workers exist, so this must run before @jax-js/jax is imported: src/engine/index.ts
// imports this module first.
//
// Why not plain worker_threads + postMessage: on this kind of (virtualised) machine a message
// round trip costs 100-200 us, mostly waking an idle CPU, and a training step runs ~40 small
// kernels, so the pool's overhead ate its gain. Instead:
// - the first worker of a pool runs on the main thread (a microtask after jax-js has posted to
//   all workers), so the main thread computes a share instead of sleeping;
// - the other workers are threads that take messages through a MessagePort read synchronously
//   and a shared "doorbell" counter, spinning briefly before they block (Atomics.wait);
// - when its own share is done the main thread waits for the threads' replies synchronously
//   (spin, then Atomics.wait, bounded), so a kernel completes without an event-loop round trip.
import { MessageChannel, receiveMessageOnPort, Worker as NodeWorker, type MessagePort } from "node:worker_threads";
import { resolveObjectURL } from "node:buffer";
import os from "node:os";
import v8 from "node:v8";

/** Minimal shapes of the browser events jax-js reads (`e.data`, `e.message`). */
export interface ShimMessageEvent {
  data: unknown;
}
export interface ShimErrorEvent {
  message: string;
  error: unknown;
}

/** How long a worker thread polls for its next message before it blocks (ms). */
const WORKER_SPIN_MS = 0.5;
/** How long the main thread polls for a thread's reply before it blocks (ms). */
const MAIN_SPIN_MS = 2;
/** After this long waiting synchronously for a reply, wait asynchronously instead (ms). */
const MAIN_SYNC_WAIT_MS = 250;

// Doorbell slots (Int32Array over a SharedArrayBuffer).
const SENT = 0; // messages posted to the thread
const REPLIED = 1; // replies the thread has posted back

// Runs inside each worker thread. The jax-js source (which uses `self.onmessage` and a global
// `postMessage`) arrives as the first message because reading a Blob is asynchronous.
const THREAD_BOOTSTRAP = `
const { workerData, receiveMessageOnPort } = require("node:worker_threads");
const vm = require("node:vm");
const { bell, port, spinMs } = workerData;
globalThis.self = globalThis;
globalThis.postMessage = (message) => {
  port.postMessage(message);
  Atomics.add(bell, ${REPLIED}, 1);
  Atomics.notify(bell, ${REPLIED});
};
let loaded = false;
let seen = 0;
for (;;) {
  const spinStart = performance.now();
  while (Atomics.load(bell, ${SENT}) === seen) {
    if (performance.now() - spinStart > spinMs) Atomics.wait(bell, ${SENT}, seen, 1000);
  }
  seen = Atomics.load(bell, ${SENT});
  for (let m; (m = receiveMessageOnPort(port)) !== undefined; ) {
    if (!loaded) {
      vm.runInThisContext(m.message, { filename: "jax-js-wasm-worker.js" });
      loaded = true;
    } else if (typeof self.onmessage === "function") {
      self.onmessage({ data: m.message });
    }
  }
}
`;

type Deliver = (data: unknown) => void;

/** Where a shim's messages actually run. */
interface Executor {
  post(message: unknown): void;
  /** Wait (synchronously, bounded) for outstanding replies and deliver them. */
  drainSync(): void;
  terminate(): void;
}

// Thread executors of live pools, drained by the main-thread executor after its own share.
const liveThreads = new Set<ThreadExecutor>();

class MainThreadExecutor implements Executor {
  readonly #self: { onmessage: ((e: ShimMessageEvent) => void) | null } = { onmessage: null };
  #queued: unknown[] | null = [];

  constructor(source: Promise<string>, deliver: Deliver, fail: (error: unknown) => void) {
    source.then((text) => {
      // The source is an import-free module body; a Function gives it a private scope.
      const run = new Function("self", "postMessage", text) as (self: unknown, post: Deliver) => void;
      run(this.#self, deliver);
      const queued = this.#queued ?? [];
      this.#queued = null;
      for (const message of queued) this.post(message);
    }, fail);
  }

  post(message: unknown): void {
    if (this.#queued) {
      this.#queued.push(message);
      return;
    }
    // Deferred so jax-js first posts the other chunks of this kernel to the threads.
    queueMicrotask(() => {
      this.#self.onmessage?.({ data: message });
      for (const thread of liveThreads) thread.drainSync();
    });
  }

  drainSync(): void {}

  terminate(): void {
    this.#self.onmessage = null;
  }
}

class ThreadExecutor implements Executor {
  readonly #thread: NodeWorker;
  readonly #port: MessagePort;
  readonly #bell = new Int32Array(new SharedArrayBuffer(8));
  readonly #deliver: Deliver;
  readonly #fail: (error: unknown) => void;
  #queued: unknown[] | null = [];
  #sent = 0;
  #delivered = 0;
  #terminated = false;

  constructor(source: Promise<string>, deliver: Deliver, fail: (error: unknown) => void) {
    this.#deliver = deliver;
    this.#fail = fail;
    const { port1, port2 } = new MessageChannel();
    this.#port = port1;
    this.#thread = new NodeWorker(THREAD_BOOTSTRAP, {
      eval: true,
      workerData: { bell: this.#bell, port: port2, spinMs: WORKER_SPIN_MS },
      transferList: [port2],
    });
    // Replies not picked up synchronously arrive here; the port is referenced only while
    // replies are outstanding, so an idle pool never keeps the process alive.
    this.#port.on("message", (data: unknown) => this.#receive(data));
    this.#port.unref();
    this.#thread.unref();
    this.#thread.on("error", (error: unknown) => this.#die(error));
    this.#thread.on("exit", (code: number) => {
      if (!this.#terminated) this.#die(new Error(`jax-js worker thread exited with code ${code}`));
    });
    liveThreads.add(this);
    source.then((text) => {
      if (this.#terminated) return;
      this.#send(text);
      const queued = this.#queued ?? [];
      this.#queued = null;
      for (const message of queued) this.#send(message);
    }, fail);
  }

  get outstanding(): number {
    return this.#sent - this.#delivered;
  }

  post(message: unknown): void {
    if (this.#terminated) return;
    if (this.outstanding === 0) this.#port.ref();
    this.#sent++;
    if (this.#queued) this.#queued.push(message);
    else this.#send(message);
  }

  #send(message: unknown): void {
    this.#port.postMessage(message);
    Atomics.add(this.#bell, SENT, 1);
    Atomics.notify(this.#bell, SENT);
  }

  drainSync(): void {
    if (this.#terminated || this.#queued || this.outstanding === 0) return;
    const start = performance.now();
    while (this.outstanding > 0) {
      const replied = Atomics.load(this.#bell, REPLIED);
      if (replied > this.#delivered) {
        const m = receiveMessageOnPort(this.#port);
        if (m === undefined) return; // already taken by the async listener; it will deliver
        this.#receive(m.message);
        continue;
      }
      const waited = performance.now() - start;
      if (waited > MAIN_SYNC_WAIT_MS) return; // long kernel: let the event loop deliver it
      if (waited > MAIN_SPIN_MS) Atomics.wait(this.#bell, REPLIED, replied, MAIN_SYNC_WAIT_MS - waited);
    }
  }

  #receive(data: unknown): void {
    this.#delivered++;
    if (this.outstanding <= 0) this.#port.unref();
    this.#deliver(data);
  }

  #die(error: unknown): void {
    const hadOutstanding = this.outstanding > 0;
    this.terminate();
    this.#fail(error);
    // jax-js only listens for errors while starting; a dispatch in flight waits for a "done"
    // reply, so send a failed one rather than leave it hanging forever.
    if (hadOutstanding) {
      const message = error instanceof Error ? error.message : String(error);
      this.#deliver({ type: "done", ok: false, error: message });
    }
  }

  terminate(): void {
    if (this.#terminated) return;
    this.#terminated = true;
    liveThreads.delete(this);
    this.#port.close();
    void this.#thread.terminate();
  }
}

// Pools are built by constructing workers for the same blob URL in a row; the first of each URL
// runs on the main thread.
const urlsWithMainThreadWorker = new Set<string>();

/**
 * The part of the browser `Worker` API that jax-js's Wasm thread pool uses: constructed from a
 * blob: URL holding an import-free script, `postMessage`, `onmessage`, `onerror`, `terminate`.
 * Each posted message is expected to get exactly one reply (jax-js's protocol: init/ready,
 * kernel/done, routine/done).
 */
export class NodeWorkerShim {
  onmessage: ((event: ShimMessageEvent) => void) | null = null;
  onerror: ((event: ShimErrorEvent) => void) | null = null;
  readonly #executor: Executor;

  constructor(url: string | URL, options?: { type?: string }) {
    void options; // module vs classic makes no difference: the source is run as a script.
    const href = String(url);
    const blob = href.startsWith("blob:") ? resolveObjectURL(href) : undefined;
    if (!blob) throw new Error(`flowmatch worker shim: only blob: URLs are supported, got ${href}`);
    const source = blob.text();
    const deliver: Deliver = (data) => this.onmessage?.({ data });
    const fail = (error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      if (this.onerror) this.onerror({ message, error });
      else console.error(`flowmatch: jax-js worker failed: ${message}`);
    };
    if (!urlsWithMainThreadWorker.has(href)) {
      urlsWithMainThreadWorker.add(href);
      this.#executor = new MainThreadExecutor(source, deliver, fail);
    } else {
      this.#executor = new ThreadExecutor(source, deliver, fail);
    }
  }

  postMessage(message: unknown): void {
    this.#executor.post(message);
  }

  terminate(): void {
    this.#executor.terminate();
  }
}

/**
 * Set the pool size jax-js reads (`navigator.hardwareConcurrency`, its only knob) and return the
 * size it will now see. Node 21+ has a real `navigator` whose `hardwareConcurrency` is a getter
 * on the prototype, so plain assignment throws in strict mode; an own data property on the
 * instance shadows it. If even that is refused, the pool keeps whatever the getter says.
 */
export function setHardwareConcurrency(threads: number): number {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.navigator === "undefined") g.navigator = { userAgent: "node" };
  const nav = g.navigator as { hardwareConcurrency?: unknown };
  try {
    Object.defineProperty(nav, "hardwareConcurrency", { value: threads, configurable: true, enumerable: true, writable: true });
  } catch {
    // Frozen or non-extensible navigator: keep its value (reported below, so counts stay true).
  }
  // jax-js: Math.max(1, navigator.hardwareConcurrency || 4).
  const seen = nav.hardwareConcurrency;
  return Math.max(1, (typeof seen === "number" && seen) || 4);
}

/**
 * Define a global `Worker` for jax-js (and `navigator.hardwareConcurrency`, its pool size)
 * unless one exists. A pool of `threads` uses the main thread plus `threads - 1` worker threads.
 * Returns the pool size jax-js will use, or 0 when it did not install the adapter.
 * Must run before @jax-js/jax is imported.
 */
export function installNodeWorkerShim(threads = defaultThreadCount()): number {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Worker !== "undefined") return 0;
  g.Worker = NodeWorkerShim;
  return setHardwareConcurrency(threads);
}

/** Pool size: the cores this process may use. */
export function defaultThreadCount(): number {
  return Math.max(1, os.availableParallelism());
}

/**
 * Threads requested through the environment: `FLOWMATCH_THREADS=1` keeps jax-js single-threaded
 * (no workers), `FLOWMATCH_THREADS=n` asks for a pool of n, unset means the default.
 */
export function threadsFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.FLOWMATCH_THREADS;
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`FLOWMATCH_THREADS must be a positive integer, got "${raw}"; unset it for the default`);
  }
  return n;
}

let poolSize = 1;

/** Threads jax-js's Wasm backend computes on (1 when the adapter is off). */
export function engineThreadCount(): number {
  return poolSize;
}

/**
 * Ask V8 to compile Wasm kernels straight to optimised code instead of starting in its baseline
 * compiler and tiering up when hot: the first few hundred training steps are ~3x faster (jax-js
 * builds many kernels per jitted program). `FLOWMATCH_WASM_TIERUP=1` keeps V8's default.
 */
export function preferOptimizedWasm(env: NodeJS.ProcessEnv = process.env): void {
  if (env.FLOWMATCH_WASM_TIERUP === "1") return;
  v8.setFlagsFromString("--no-wasm-dynamic-tiering");
}

// Runs on import, which src/engine/index.ts does before importing @jax-js/jax.
{
  const requested = threadsFromEnv() ?? defaultThreadCount();
  if (requested > 1) poolSize = installNodeWorkerShim(requested) || 1;
  preferOptimizedWasm();
}
