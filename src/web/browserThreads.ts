// Browser stand-in for src/engine/threads.ts, swapped in by build.ts. That module adapts Node's
// worker_threads to the browser `Worker` API jax-js expects; a browser already has real workers,
// and jax-js runs its Wasm thread pool on them when the page is cross-origin isolated
// (SharedArrayBuffer, which `flowmatch serve` enables with COOP/COEP headers).

/** Threads jax-js's Wasm backend computes on here (1 without SharedArrayBuffer). */
export function engineThreadCount(): number {
  const shared = typeof SharedArrayBuffer !== "undefined" && typeof Worker !== "undefined";
  return shared ? Math.max(1, navigator.hardwareConcurrency || 4) : 1;
}
