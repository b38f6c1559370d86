// onnxruntime-node sessions for traced graphs (Node only: not re-exported from src/engine/index.ts,
// so the browser bundle never pulls it in).
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "./proto.js";
import { NCHWC_DOMAIN, ONNX_OPSET } from "./translate.js";

export interface OrtSessionOptions {
  /** Intra-op threads (default 2; see DEFAULT_ORT_THREADS). */
  threads?: number;
  /**
   * onnxruntime's memory pattern: it plans one block for all intermediates of a run. Off trades
   * speed for memory; measured on the UNet training step (batch 32, 2 threads, quiet machine):
   * peak RSS 1037 -> 645 MiB and +3% time (32,64,64), 607 -> 418 MiB and +17% time (16,32,32).
   */
  memPattern?: boolean;
}

/**
 * Two intra-op threads by default (without spinning). Interleaved blocks on the shared 2-core
 * machine, load 3-4: MLP 512x3 batch 4096 step 107 ms on 2 threads vs 248 on 1; UNet 16,32,32
 * batch 32 304 vs 208 img/s; UNet 32,64,64 73 vs 81 img/s; MLP 256x3 batch 256 a tie (5.2 vs 4.5
 * ms). Under heavy oversubscription (load 14-16) 1 thread was equal or better. FLOWMATCH_ORT_THREADS
 * overrides it. Re-measured after packed state and the translator's optimisations (bench/profile.ts
 * --ab-threads, steps alternating between a 1- and a 2-thread session, load 19-20): 1 thread faster
 * on the MLP 256x3 step (0.92x), a tie on MLP 512x3 batch 4096 (1.02x) and the 16,32,32 UNet (0.98x,
 * per-step pairs): no change made, as the quiet-machine numbers above favour 2 threads.
 * Data-parallel training (train-image) runs one one-thread session per thread instead (see
 * pipelines/trainers.ts, ShardedStep): UNet steps 0.65-0.80x the time of one 2-thread session.
 */
export const DEFAULT_ORT_THREADS = 2;

export function ortThreadsFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.FLOWMATCH_ORT_THREADS;
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`FLOWMATCH_ORT_THREADS must be a positive integer, got "${raw}"; unset it for the default`);
  return n;
}

/** The onnxruntime thread count to use: `threads` if given, else FLOWMATCH_ORT_THREADS, else DEFAULT_ORT_THREADS. */
export function ortThreads(threads?: number): number {
  return threads ?? ortThreadsFromEnv() ?? DEFAULT_ORT_THREADS;
}

/**
 * onnxruntime's options for a CPU session as chosen by measurement: sequential execution, full
 * graph optimisation, and no spinning thread pools (spinning pools collapse when the cores are
 * shared: 4.3 vs 7.4 ms on the MLP step with another process running). A plain object, so it can
 * also be sent to a session on another thread (./thread.ts).
 */
export function ortSessionOptions(opts: OrtSessionOptions = {}): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: ortThreads(opts.threads),
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    // Errors only: its warnings (e.g. about unused inputs) are not the user's business.
    logSeverityLevel: 3,
    enableMemPattern: opts.memPattern ?? true,
    extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } },
  };
}

/** A CPU session with ortSessionOptions. */
export async function createOrtSession(bytes: Uint8Array, opts: OrtSessionOptions = {}): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes, ortSessionOptions(opts));
}

let nchwcBlock: Promise<number> | null = null;

/**
 * onnxruntime's NCHWc block size on this machine (TranslateOptions.nchwcBlock), read from the
 * channel padding of its ReorderInput on a 4-channel tensor (it takes multiples of 4): 16 with
 * AVX-512, 8 with AVX2; 0 where the blocked kernels do not exist (the session fails to load) or the
 * answer is not a block size.
 */
export function nchwcBlockSize(): Promise<number> {
  nchwcBlock ??= (async () => {
    const g = new GraphBuilder();
    g.nodes.push({ op: "ReorderInput", inputs: ["x"], outputs: ["y"], domain: NCHWC_DOMAIN });
    const bytes = g.encode([{ name: "x", dims: [1, 4, 1, 1] }], [{ name: "y", dims: [1, "c", 1, 1] }], "nchwc_probe", ONNX_OPSET);
    try {
      // Fatal-only logging: where the kernels do not exist, failing to load is the answer, not an error to print.
      const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, logSeverityLevel: 4 });
      try {
        const r = await s.run({ x: new ort.Tensor("float32", new Float32Array(4), [1, 4, 1, 1]) });
        const bl = r.y.dims[1];
        return bl > 1 && (bl & (bl - 1)) === 0 ? bl : 0;
      } finally {
        await s.release();
      }
    } catch {
      return 0;
    }
  })();
  return nchwcBlock;
}

export { ort };
