// initEngine's device handling: a failed start is not remembered (so a page or CLI can retry or
// fall back to another device in the same process), and a call without a device keeps the one
// already started (library code calls initEngine() after the CLI or page picked the device).
import { test } from "node:test";
import assert from "node:assert/strict";
import { defaultDevice, engineDevice, initEngine, np, toHost } from "../../../src/engine/index.js";

test("a failed WebGPU start is retried on the next call, and Wasm starts after it", async () => {
  const nav = globalThis.navigator as unknown as { gpu?: unknown };
  assert.equal(nav.gpu, undefined, "Node has no WebGPU of its own");
  let requests = 0;
  // A platform whose WebGPU offers no adapter (a browser with the GPU blocked, Dawn without drivers).
  Object.defineProperty(nav, "gpu", { value: { requestAdapter: async () => (requests++, null) }, configurable: true });
  try {
    await assert.rejects(initEngine("webgpu"), /^Error: WebGPU is not available here: no GPU adapter was found/);
    await assert.rejects(initEngine("webgpu"), /WebGPU is not available here/);
    assert.equal(requests, 2, "the second start asked for an adapter again instead of replaying the first failure");
    await initEngine("wasm");
    assert.equal(engineDevice(), "wasm");
    assert.equal(defaultDevice(), "wasm");
    assert.deepEqual(Array.from(await toHost(np.array([1, 2, 3]).mul(2))), [2, 4, 6]);
  } finally {
    delete nav.gpu;
  }
});

test("initEngine() keeps the device started last; naming another device switches to it", async () => {
  await initEngine("cpu");
  await initEngine();
  assert.equal(engineDevice(), "cpu");
  assert.equal(defaultDevice(), "cpu");
  await initEngine("wasm");
  await initEngine();
  assert.equal(defaultDevice(), "wasm");
});
