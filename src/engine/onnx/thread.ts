// onnxruntime sessions on a worker thread of their own (Node only), so that several graphs run at
// once: a data-parallel training step runs one shard of the batch per thread, each session on one
// intra-op thread. onnxruntime-node's run() computes on the calling JS thread, so a second thread
// is the only way to run two sessions at the same time.
//
// The worker is a short CommonJS script (below) that requires onnxruntime-node by its resolved
// path: no TypeScript file to load in the thread, so it starts the same from source (tsx) and
// built. A session here takes and returns ort.Tensors like a local one; they cross as plain
// {type, data, dims} records (ort.Tensor is a class and does not survive postMessage): inputs are
// copied by the structured clone, outputs are moved back (transferred).
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { ort, ortSessionOptions, type OrtSessionOptions } from "./session.js";

/** A tensor as it crosses threads. */
interface WireTensor {
  type: "float32" | "int32";
  data: Float32Array | Int32Array;
  dims: number[];
}

/** A view of part of a buffer is sliced first: posting it would copy its whole buffer. */
function toWire(t: ort.Tensor): WireTensor {
  const data = t.data as Float32Array | Int32Array;
  const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
  return { type: t.type === "int32" ? "int32" : "float32", data: whole ? data : data.slice(), dims: t.dims.slice() };
}

function fromWire(w: WireTensor): ort.Tensor {
  return w.type === "int32"
    ? new ort.Tensor("int32", w.data as Int32Array, w.dims)
    : new ort.Tensor("float32", w.data as Float32Array, w.dims);
}

type Request =
  | { op: "load"; id: number; bytes: Uint8Array; options: unknown }
  | { op: "run"; id: number; session: number; feeds: Record<string, WireTensor> }
  | { op: "release"; id: number; session: number };

/** A reply: the new session's number (load), outputs (run), nothing (release), or an error message. */
interface Reply {
  id: number;
  session?: number;
  outputs?: Record<string, WireTensor>;
  error?: string;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const ort = require(workerData.ort);
const sessions = new Map();
let next = 0;
const session = (n) => {
  const s = sessions.get(n);
  if (!s) throw new Error("onnxruntime worker thread: no session " + n);
  return s;
};
parentPort.on("message", async (m) => {
  try {
    if (m.op === "load") {
      const n = next++;
      sessions.set(n, await ort.InferenceSession.create(m.bytes, m.options));
      parentPort.postMessage({ id: m.id, session: n });
    } else if (m.op === "run") {
      const feeds = {};
      for (const [k, t] of Object.entries(m.feeds)) feeds[k] = new ort.Tensor(t.type, t.data, t.dims);
      const res = await session(m.session).run(feeds);
      const outputs = {};
      const transfer = [];
      for (const [k, t] of Object.entries(res)) {
        // Moved, not copied, when the output owns its whole buffer (onnxruntime-node's do).
        const own = t.data.byteOffset === 0 && t.data.buffer.byteLength === t.data.byteLength;
        const data = own ? t.data : t.type === "int32" ? Int32Array.from(t.data) : Float32Array.from(t.data);
        outputs[k] = { type: t.type === "int32" ? "int32" : "float32", data, dims: t.dims.slice() };
        transfer.push(data.buffer);
      }
      parentPort.postMessage({ id: m.id, outputs }, transfer);
    } else {
      await session(m.session).release();
      sessions.delete(m.session);
      parentPort.postMessage({ id: m.id });
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) });
  }
});
`;

/** A session living on an OrtThread: run takes and returns ort.Tensors, as a local session's. */
export interface ThreadSession {
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

/** One worker thread hosting onnxruntime sessions; requests run one at a time, in order. */
export class OrtThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private dead: Error | null = null;

  constructor() {
    const ortPath = createRequire(import.meta.url).resolve("onnxruntime-node");
    // No inherited node flags: the script needs none, and some would change how it loads
    // (--input-type=module makes an eval'd script ESM, without require; --import preloads run again).
    this.worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { ort: ortPath } });
    // An idle thread must not keep the process alive; a pending request must (see request()).
    this.worker.unref();
    this.worker.on("message", (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (this.pending.size === 0) this.worker.unref();
      if (r.error !== undefined) p.reject(new Error(r.error));
      else p.resolve(r);
    });
    const fail = (e: Error) => {
      this.dead ??= e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on("error", fail);
    this.worker.on("exit", (code) => fail(new Error(`onnxruntime worker thread exited (code ${code})`)));
  }

  private request(message: Request): Promise<Reply> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.pending.set(message.id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage(message);
    });
  }

  /** Create a session from ONNX bytes on this thread (options as createOrtSession's). */
  async load(bytes: Uint8Array, options: OrtSessionOptions = {}): Promise<ThreadSession> {
    const r = await this.request({ op: "load", id: this.nextId++, bytes, options: ortSessionOptions(options) });
    const session = r.session as number;
    return {
      run: async (feeds) => {
        const wired = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, toWire(t)]));
        const r = await this.request({ op: "run", id: this.nextId++, session, feeds: wired });
        return Object.fromEntries(Object.entries(r.outputs ?? {}).map(([k, w]) => [k, fromWire(w)]));
      },
      release: async () => {
        if (!this.dead) await this.request({ op: "release", id: this.nextId++, session });
      },
    };
  }

  /** Stop the thread (its sessions with it). */
  async terminate(): Promise<void> {
    this.dead ??= new Error("onnxruntime worker thread terminated");
    await this.worker.terminate();
  }
}
