// OrtThread: onnxruntime sessions on a worker thread give the same outputs as a session on this
// thread, report errors as rejections, run at the same time as this thread's work, and never keep
// a finished process alive.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { GraphBuilder, ONNX_TYPE } from "../../../src/engine/onnx/proto.js";
import { createOrtSession, ort } from "../../../src/engine/onnx/session.js";
import { OrtThread } from "../../../src/engine/onnx/thread.js";

/** y = x * 2 + float(k): a float and an int32 input, a float output. */
function graph(): Uint8Array {
  const g = new GraphBuilder();
  const two = g.floatConst("two", Float32Array.of(2), []);
  const kf = g.op("Cast", ["k"], { to: ONNX_TYPE.FLOAT });
  g.nodes.push({ op: "Add", inputs: [g.op("Mul", ["x", two]), kf], outputs: ["y"] });
  return g.encode(
    [
      { name: "x", dims: [2, 3] },
      { name: "k", dims: [3], elemType: ONNX_TYPE.INT32 },
    ],
    [{ name: "y", dims: [2, 3] }],
    "thread_test",
  );
}

test("a session on an OrtThread computes what a session on this thread does; errors come back as rejections", async () => {
  const bytes = graph();
  const x = Float32Array.of(1, -2, 3.5, 0.25, 8, -1);
  const k = Int32Array.of(1, 2, 3);
  const local = await createOrtSession(bytes, { threads: 1 });
  const want = (await local.run({ x: new ort.Tensor("float32", x, [2, 3]), k: new ort.Tensor("int32", k, [3]) })).y;
  const thread = new OrtThread();
  try {
    const s = await thread.load(bytes, { threads: 1 });
    const feeds = (xs: Float32Array, dims = [2, 3]) => ({ x: new ort.Tensor("float32", xs, dims), k: new ort.Tensor("int32", k, [3]) });
    const got = await s.run(feeds(x));
    assert.deepEqual(got.y.dims, [2, 3]);
    assert.deepEqual(Array.from(got.y.data as Float32Array), Array.from(want.data as Float32Array));
    assert.deepEqual(Array.from(x), [1, -2, 3.5, 0.25, 8, -1], "the caller's input is left as it was");
    // A view into a larger buffer (sliced before it is posted) gives the same result.
    const padded = Float32Array.of(99, ...x, 99);
    const view = await s.run(feeds(padded.subarray(1, 7)));
    assert.deepEqual(Array.from(view.y.data as Float32Array), Array.from(want.data as Float32Array));
    // A wrong shape: onnxruntime's own message, and the thread keeps working.
    await assert.rejects(s.run(feeds(new Float32Array(4), [2, 2])), /x|dimension|shape/i);
    await assert.rejects(thread.load(Uint8Array.of(1, 2, 3)), /./);
    const again = await s.run(feeds(x));
    assert.deepEqual(Array.from(again.y.data as Float32Array), Array.from(want.data as Float32Array));
    await s.release();
    await assert.rejects(s.run(feeds(x)), /no session/);
  } finally {
    await thread.terminate();
    await local.release();
  }
  await assert.rejects(thread.load(bytes), /terminated/);
});

test("an OrtThread left running does not keep the process alive", () => {
  // A child that loads and runs a session and then just ends its script, never terminating the thread.
  const here = import.meta.dirname;
  const script = `
    import { OrtThread } from ${JSON.stringify(join(here, "../../../src/engine/onnx/thread.ts"))};
    import { GraphBuilder } from ${JSON.stringify(join(here, "../../../src/engine/onnx/proto.ts"))};
    import { ort } from ${JSON.stringify(join(here, "../../../src/engine/onnx/session.ts"))};
    const g = new GraphBuilder();
    g.nodes.push({ op: "Neg", inputs: ["x"], outputs: ["y"] });
    const t = new OrtThread();
    const s = await t.load(g.encode([{ name: "x", dims: [2] }], [{ name: "y", dims: [2] }], "neg"));
    const r = await s.run({ x: new ort.Tensor("float32", Float32Array.of(1, 2), [2]) });
    console.log(Array.from(r.y.data).join(","));
  `;
  const r = spawnSync(process.execPath, ["--import", import.meta.resolve("tsx"), "--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(r.signal, null, "the process had to be killed: the thread kept it alive");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), "-1,-2");
});
