// Which device the playground's engine runs on, and the fall back to Wasm: WebGPU support varies by
// browser, driver and GPU, so a WebGPU that fails to start or fails in a kernel must not end the
// session. The worker calls startWebEngine once and fallBackToWasm after a failure on WebGPU; each
// returns what the page needs to say (protocol.ts "ready" and "engineFallback").
import { type AdapterInfo, describeAdapter, engineThreadCount, initEngine, webgpuAdapterInfo } from "../engine/index.js";

export type WebDevice = "wasm" | "webgpu";

export interface EngineStarted {
  device: WebDevice;
  threads: number;
  /** The WebGPU adapter, described for people (null on Wasm). */
  adapter: string | null;
  /** Why WebGPU was asked for but is not used (null when nothing failed). */
  fallback: string | null;
}

let device: WebDevice | null = null;

/** The device the engine runs on (null before startWebEngine). */
export function webEngineDevice(): WebDevice | null {
  return device;
}

function reason(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}

async function startWasm(fallback: string | null): Promise<EngineStarted> {
  await initEngine("wasm");
  device = "wasm";
  return { device, threads: engineThreadCount(), adapter: null, fallback };
}

/**
 * "auto" uses WebGPU only on a hardware adapter: a software one (SwiftShader, Chrome's fallback when
 * the GPU is blocked) is slower than Wasm. "webgpu" (?device=webgpu) takes any adapter. A WebGPU
 * that was asked for and fails to start falls back to Wasm with the reason.
 */
export async function startWebEngine(requested: "auto" | WebDevice): Promise<EngineStarted> {
  if (requested === "wasm") return startWasm(null);
  let adapter: AdapterInfo | null;
  try {
    adapter = await webgpuAdapterInfo();
  } catch (err) {
    return startWasm(`WebGPU gave no adapter (${reason(err)})`);
  }
  if (!adapter) return startWasm(requested === "webgpu" ? "this browser offers no WebGPU adapter" : null);
  if (requested === "auto" && adapter.isFallbackAdapter) return startWasm(null);
  try {
    await initEngine("webgpu");
  } catch (err) {
    return startWasm(`WebGPU did not start on ${describeAdapter(adapter)} (${reason(err)})`);
  }
  device = "webgpu";
  return { device, threads: 1, adapter: describeAdapter(adapter), fallback: null };
}

/** After an engine failure on WebGPU: continue on Wasm. Work on WebGPU arrays must be redone. */
export async function fallBackToWasm(err: unknown): Promise<EngineStarted> {
  return startWasm(`a WebGPU kernel failed (${reason(err)})`);
}
