// traceToOnnxBatched: one graph for every batch size from two traces, or a loud error when the
// function depends on the batch size in a way a symbolic batch cannot express.
import { test } from "node:test";
import assert from "node:assert/strict";
import { initEngine, np, type Array } from "../../../src/engine/index.js";
import { traceToOnnxBatched } from "../../../src/engine/onnx/trace.js";
import { decodeOnnxModel } from "../../../src/engine/onnx/proto.js";
import { createOrtSession, ort } from "../../../src/engine/onnx/session.js";

test("a batch-symbolic graph runs at batch sizes it was not traced at (reshape, concat, slice of k * B)", async () => {
  await initEngine();
  // Batch-dependent shape vectors: [2B, 3] (concat), [B, 6] / [6B] reshapes, slices at B.
  const fn = (x: Array, w: Array) => {
    const n = x.shape[0];
    const both = np.concatenate([x.ref, x.mul(2)], 0); // [2B, 3]
    const flat = both.reshape([-1]).mul(w); // [6B]
    const halves = flat.reshape([2, n * 3]);
    return halves.ref.slice(1).sub(halves.slice(0)).reshape([n, 3]); // = x
  };
  const bytes = await traceToOnnxBatched(fn, (b) => [np.zeros([b, 3]), np.array(1, { dtype: np.float32 })], {
    inputNames: ["x", "w"],
    outputNames: ["v"],
    batchInput: "x",
  });
  const model = decodeOnnxModel(bytes);
  assert.deepEqual(
    model.graph.input?.map((v) => v.type.tensor_type.shape.dim.map((d) => d.dim_param ?? d.dim_value)),
    [["B", 3], []],
  );
  const session = await createOrtSession(bytes, { threads: 1 });
  try {
    for (const B of [1, 2, 5]) {
      const x = Float32Array.from({ length: 3 * B }, (_, i) => i - 2.5);
      const v = (await session.run({ x: new ort.Tensor("float32", x, [B, 3]), w: new ort.Tensor("float32", Float32Array.of(1.5), []) })).v;
      assert.deepEqual(v.dims, [B, 3]);
      assert.deepEqual(
        Array.from(v.data as Float32Array),
        Array.from(x, (a) => 1.5 * a),
        `batch ${B}`,
      );
    }
  } finally {
    await session.release();
  }
});

test("a function that depends on the batch size otherwise (a mean over the batch) is refused by name", async () => {
  await initEngine();
  const fn = (x: Array) => x.ref.sub(np.mean(x, 0, { keepdims: true }));
  await assert.rejects(
    traceToOnnxBatched(fn, (b) => [np.zeros([b, 4])], { inputNames: ["x"], outputNames: ["v"], batchInput: "x" }),
    /symbolic batch: constant c_lit_\d+ \(type 1\) changes with the batch size/,
  );
});
