// WebGPU for Node: Node has no navigator.gpu, so `--device webgpu` borrows one from the npm package
// `webgpu` (Google's Dawn built as a Node addon, prebuilt for linux/mac/windows). Node-only and not
// re-exported from index.ts, so the browser bundle never sees it. The package is a devDependency
// (21 MB per platform): users who want the flag install it themselves, and get that fix in the error.

/** Make navigator.gpu (and the GPU* constant globals jax-js reads) available on Node. Idempotent. */
export async function provideNodeWebgpu(): Promise<void> {
  const nav = globalThis.navigator as { gpu?: unknown } | undefined;
  if (!nav) throw new Error("navigator is missing: import src/engine/index.js (its shims) before provideNodeWebgpu");
  if (nav.gpu) return;
  let dawn: typeof import("webgpu");
  try {
    dawn = await import("webgpu");
  } catch (err) {
    const why = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new Error(
      `--device webgpu needs the "webgpu" package (Dawn for Node), which did not load (${why}): run \`npm install webgpu@0.6.2\``,
    );
  }
  // jax-js reads GPUBufferUsage, GPUMapMode, GPUShaderStage... as globals, as in a browser.
  for (const [name, value] of Object.entries(dawn.globals)) {
    if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  }
  // Node 21+ has a real navigator; an own property on it shadows nothing (it has no gpu).
  Object.defineProperty(nav, "gpu", { value: dawn.create([]), configurable: true });
}
