// The one boundary between flowmatch and the tensor engine (@jax-js/jax).
// Everything else imports tensors, transforms and devices from here, so the engine can be
// swapped or patched in one place.
import "./shims.js";
// Must come before @jax-js/jax: installs the worker-thread pool adapter (FLOWMATCH_THREADS=1 turns
// it off) and V8's Wasm compile flag, both read when jax-js loads or first compiles.
import "./threads.js";
import * as jax from "@jax-js/jax";

export { engineThreadCount } from "./threads.js";

export const { numpy: np, nn, random, tree, lax } = jax;
export const { jit, vjp, jvp, vmap, init, defaultDevice, blockUntilReady, makeJaxpr } = jax;
// Annotated: their inferred types are too long for the declaration files of the package build.
export const grad: typeof jax.grad = jax.grad;
export const valueAndGrad: typeof jax.valueAndGrad = jax.valueAndGrad;
export type Array = jax.Array;
export type Device = jax.Device;
export type DType = jax.DType;

let ready: Promise<void> | null = null;

/** Initialise the engine once (Wasm on Node, WebGPU in browsers when asked and available). */
export function initEngine(device: Device = "wasm"): Promise<void> {
  ready ??= (async () => {
    const devices = await jax.init(device);
    if (!devices.includes(device)) {
      throw new Error(`engine device "${device}" is not available here (have: ${devices.join(", ") || "none"})`);
    }
    jax.defaultDevice(device);
  })();
  return ready;
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
