// onnxruntime-node sessions for traced graphs (Node only: not re-exported from src/engine/index.ts,
// so the browser bundle never pulls it in).
import * as ort from "onnxruntime-node";

export interface OrtSessionOptions {
  /** Intra-op threads (default 1; see DEFAULT_ORT_THREADS). */
  threads?: number;
}

/**
 * One intra-op thread by default. Measured on a shared 2-core machine (interleaved blocks, load
 * 14-16): the MLP training step ran equally fast on 1 and 2 threads (median 22.0 vs 21.6 ms), the
 * UNet step faster on 1 (628 vs 907 ms). FLOWMATCH_ORT_THREADS overrides it.
 */
export const DEFAULT_ORT_THREADS = 1;

export function ortThreadsFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.FLOWMATCH_ORT_THREADS;
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`FLOWMATCH_ORT_THREADS must be a positive integer, got "${raw}"; unset it for the default`);
  return n;
}

/**
 * A CPU session with the options chosen by measurement: sequential execution, full graph
 * optimisation, and no spinning thread pools (spinning pools collapse when the cores are shared:
 * 4.3 vs 7.4 ms on the MLP step with another process running).
 */
export async function createOrtSession(bytes: Uint8Array, opts: OrtSessionOptions = {}): Promise<ort.InferenceSession> {
  const threads = opts.threads ?? ortThreadsFromEnv() ?? DEFAULT_ORT_THREADS;
  return ort.InferenceSession.create(bytes, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    // Errors only: its warnings (e.g. about unused inputs) are not the user's business.
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } },
  });
}

export { ort };
