// The one boundary between flowmatch and the tensor engine (@jax-js/jax).
// Everything else imports tensors, transforms and devices from here, so the engine can be
// swapped or patched in one place.
import "./shims.js";
// Must come before @jax-js/jax: installs the worker-thread pool adapter (FLOWMATCH_THREADS=1 turns
// it off) and V8's Wasm compile flag, both read when jax-js loads or first compiles.
import "./threads.js";
import * as jax from "@jax-js/jax";

export { engineThreadCount } from "./threads.js";
export { webgpuAdapterInfo, describeAdapter, type AdapterInfo } from "./adapterInfo.js";

export const { numpy: np, nn, random, tree, lax } = jax;
export const { jit, vjp, jvp, vmap, init, defaultDevice, blockUntilReady, makeJaxpr } = jax;
// Annotated: their inferred types are too long for the declaration files of the package build.
export const grad: typeof jax.grad = jax.grad;
export const valueAndGrad: typeof jax.valueAndGrad = jax.valueAndGrad;
/**
 * An array on the engine (@jax-js/jax): what models, parameters and the training step compute with.
 * Passing one to a function consumes it; keep it with `.ref`. Copy to and from the host with toHost/fromHost.
 */
export type Array = jax.Array;
/** An engine backend for initEngine: "wasm" runs everywhere, "webgpu" in browsers that have it and in Node through the `webgpu` package. */
export type Device = jax.Device;
export type DType = jax.DType;

/** Devices started successfully (or starting); a failed start is removed so it can be retried. */
const starts = new Map<Device, Promise<void>>();
let current: Device | null = null;

/**
 * Start the engine on a device and make it the default (Wasm unless asked; WebGPU in browsers that
 * have it, and on Node once src/engine/webgpuNode.ts has provided navigator.gpu). A call without a
 * device keeps the device already started, so library code can call `initEngine()` freely after a
 * CLI or page picked one. A failed start is not remembered: the caller can retry or pick another.
 */
export async function initEngine(device?: Device): Promise<void> {
  const want = device ?? current ?? "wasm";
  let start = starts.get(want);
  if (!start) {
    start = (async () => {
      const devices = await jax.init(want);
      if (!devices.includes(want)) {
        throw new Error(
          want === "webgpu"
            ? "WebGPU is not available here: no GPU adapter was found " +
                "(a WebGPU-capable browser or, on Node, a Vulkan/Metal/D3D12 driver Dawn can use)"
            : `engine device "${want}" is not available here (have: ${devices.join(", ") || "none"})`,
        );
      }
    })();
    starts.set(want, start);
    start.catch(() => starts.delete(want));
  }
  await start;
  jax.defaultDevice(want);
  current = want;
}

/** The device initEngine last started (null before the first start). */
export function engineDevice(): Device | null {
  return current;
}

/** Copy an engine array to a host Float32Array, consuming the array. */
export async function toHost(a: Array): Promise<Float32Array> {
  const data = await a.data();
  return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
}

/** Synchronous variant for small arrays (blocks on pending work). */
export function toHostSync(a: Array): Float32Array {
  const data = a.dataSync();
  return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
}

/** Wrap a host Float32Array as an engine array of the given shape. */
export function fromHost(data: Float32Array, shape: number[]): Array {
  return np.array(data).reshape(shape);
}
