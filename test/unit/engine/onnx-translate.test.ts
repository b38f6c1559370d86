// jaxpr -> ONNX: every primitive the training steps emit, traced from jax-js and run on onnxruntime,
// must give what jax-js gives on the same random inputs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { initEngine, jit, grad, jvp, lax, nn, np, tree, type Array } from "../../../src/engine/index.js";
import { initMlp, mlpModel, type MlpConfig } from "../../../src/core/models/mlp.js";
import { initUnet, unetApply, unetParamShapes, type UnetConfig } from "../../../src/core/models/unet.js";
import { dotProductAttention } from "../../../src/core/models/layers.js";
import { traceToOnnx, leafPaths, type TraceOptions, type TracedOnnx } from "../../../src/engine/onnx/trace.js";
import { JAX_JS_VERSION } from "../../../src/engine/onnx/translate.js";
import { createOrtSession, nchwcBlockSize, ort } from "../../../src/engine/onnx/session.js";
import { Rng } from "../../../src/core/rng.js";

const rng = new Rng(11);
const randn = (shape: number[], scale = 1): Array =>
  np.array(rng.normals(shape.reduce((a, b) => a * b, 1)).map((v) => v * scale)).reshape(shape);
const ints = (shape: number[], n: number): Array =>
  np
    .array(
      Int32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.int(n)),
      { dtype: np.int32 },
    )
    .reshape(shape);

type Fn = (...args: never[]) => Array | Array[];

async function hostOf(a: Array): Promise<{ data: Float32Array | Int32Array | Uint8Array | Float64Array; type: ort.Tensor.Type }> {
  const d = await a.ref.data();
  if (a.dtype === "bool") return { data: Uint8Array.from(d as ArrayLike<number>, (v) => (v ? 1 : 0)), type: "bool" };
  if (d instanceof Float32Array) return { data: d, type: "float32" };
  if (d instanceof Int32Array) return { data: d, type: "int32" };
  if (d instanceof Float64Array) return { data: d, type: "float64" };
  throw new Error(`test: unexpected data for dtype ${a.dtype}`);
}

/**
 * Trace fn, run it on onnxruntime and on jax-js (jit), and compare every output.
 * Returns the traced primitive histogram so a test can check what it exercised.
 */
async function agree(
  fn: Fn,
  args: Array[],
  tol = 1e-5,
  opts: TraceOptions = {},
): Promise<{ prims: Record<string, number>; stats: TracedOnnx["stats"] }> {
  await initEngine();
  const graph = await traceToOnnx(fn, args, opts);
  const session = await createOrtSession(graph.bytes);
  const feeds: Record<string, ort.Tensor> = {};
  const leaves = tree.flatten(args)[0] as Array[];
  for (let i = 0; i < leaves.length; i++) {
    const { data, type } = await hostOf(leaves[i]);
    feeds[graph.inputs[i].name] = new ort.Tensor(type, data, leaves[i].shape);
  }
  const res = await session.run(feeds);
  await session.release();
  const expected = jit(fn as (...a: Array[]) => Array | Array[])(...args);
  const outs = tree.flatten(expected)[0] as Array[];
  assert.equal(outs.length, graph.outputs.length);
  for (let i = 0; i < outs.length; i++) {
    const got = res[graph.outputs[i].name];
    assert.deepEqual([...got.dims], outs[i].shape, `output ${i} shape`);
    const want = (await hostOf(outs[i])).data;
    const have = got.data as ArrayLike<number>;
    assert.equal(have.length, want.length);
    let scale = 0;
    for (let k = 0; k < want.length; k++) if (Number.isFinite(want[k])) scale = Math.max(scale, Math.abs(want[k]));
    for (let k = 0; k < want.length; k++) {
      const a = Number(have[k]);
      const b = Number(want[k]);
      if (Number.isNaN(b)) assert.ok(Number.isNaN(a), `output ${i}[${k}]: onnx ${a}, jax NaN`);
      else if (!Number.isFinite(b)) assert.equal(a, b, `output ${i}[${k}]`);
      else
        assert.ok(
          Math.abs(a - b) <= tol * Math.max(1, scale),
          `output ${i}[${k}]: onnx ${a} vs jax ${b} (tol ${tol} x ${Math.max(1, scale)})`,
        );
    }
    outs[i].dispose();
  }
  return { prims: graph.primitives, stats: graph.stats };
}

test("jaxpr->ONNX: unary functions (exp, log, sin, cos, sqrt, reciprocal, floor, ceil, erf, tanh, silu)", async () => {
  const x = randn([3, 5]);
  const pos = np.abs(randn([3, 5])).add(0.1);
  const { prims } = await agree(
    (a: Array, b: Array) => [
      np.exp(a.ref),
      np.log(b.ref),
      np.sin(a.ref),
      np.cos(a.ref),
      np.sqrt(b.ref),
      np.reciprocal(b),
      np.floor(a.ref.mul(3)),
      np.ceil(a.ref.mul(3)),
      lax.erf(a.ref),
      np.tanh(a.ref.mul(4)),
      nn.silu(a.ref),
      a.ref.mul(0.5).mul(np.tanh(a.mul(0.5)).add(1)),
    ],
    [x, pos],
  );
  for (const p of ["exp", "log", "sin", "cos", "sqrt", "reciprocal", "floor", "ceil", "erf", "where", "compare"])
    assert.ok(prims[p], `exercised ${p}`);
});

test("jaxpr->ONNX: broadcasting binary ops with literals (add, sub, mul, div, min, max)", async () => {
  const { prims } = await agree(
    (a: Array, b: Array) => [
      a.ref.add(b.ref),
      a.ref.sub(b.ref),
      a.ref.mul(b.ref).mul(2.5).add(1),
      a.ref.div(b.ref.add(3)),
      np.minimum(a.ref, b.ref),
      np.maximum(a, b),
    ],
    [randn([4, 1, 3]), randn([5, 1])],
  );
  for (const p of ["add", "mul", "neg", "min", "max", "reciprocal"]) assert.ok(prims[p], `exercised ${p}`);
});

test("jaxpr->ONNX: compare, where, isfinite and casts (the non-finite step guard)", async () => {
  const x = new Float32Array(rng.normals(12));
  x[1] = NaN;
  x[5] = Infinity;
  x[7] = -Infinity;
  const { prims } = await agree(
    (a: Array, b: Array, k: Array) => {
      const finite = np.isfinite(a.ref);
      const allFinite = np.all(finite.ref);
      const safe = np.where(finite.ref, a.ref, 0);
      return [
        finite.astype(np.float32),
        allFinite.astype(np.int32),
        safe.ref,
        np.where(np.all(np.isfinite(a.ref)), a.ref, b.ref),
        np.where(a.ref.less(b.ref), a.ref, b.ref.mul(2)),
        np.equal(k.ref, 2).astype(np.float32),
        np.notEqual(k.ref, 2),
        a.ref.lessEqual(0.5),
        k.ref.astype(np.float32).mul(0.5),
        safe.mul(3.7).astype(np.int32),
        k.mul(3).add(1),
        b.greater(a),
      ];
    },
    [np.array(x).reshape([3, 4]), randn([3, 4]), ints([3, 4], 4)],
  );
  for (const p of ["compare", "where", "cast", "reduce"]) assert.ok(prims[p], `exercised ${p}`);
});

test("jaxpr->ONNX: reductions over chosen axes, keepdims, and over broadcast axes", async () => {
  await agree(
    (a: Array, row: Array) => [
      np.sum(a.ref, [0, 2]),
      np.max(a.ref, 1),
      np.min(a.ref, [2], { keepdims: true }),
      np.prod(a.ref.mul(0.5).add(1), 0),
      np.mean(a.ref),
      np.sum(np.broadcastTo(row.ref, [3, 4]), 0),
      np.sum(np.broadcastTo(row.ref.reshape([1, 4, 1]), [3, 4, 5]), [0, 2]),
      np.max(np.broadcastTo(row, [6, 4]), 0),
      np.sum(a),
    ],
    [randn([3, 4, 5]), randn([4])],
  );
});

test("jaxpr->ONNX: softmax and multi-head attention (max over one axis, batched matmuls) and its gradient agree", async () => {
  const q = randn([2, 3, 5, 4]);
  const k = randn([2, 3, 6, 4], 3);
  const v = randn([2, 3, 6, 2]);
  const attn = (q: Array, k: Array, v: Array) => dotProductAttention(q, k, v);
  const { prims } = await agree((q: Array, k: Array, v: Array) => [attn(q.ref, k.ref, v.ref), nn.softmax(k, 2)], [q.ref, k.ref, v.ref]);
  assert.ok(prims.reduce && prims.exp && prims.dot, "exercised reduce (max, sum), exp and dot");
  await agree(
    (q: Array, k: Array, v: Array) => grad((q: Array) => np.sum(attn(q.ref, k.ref, v.ref).mul(attn(q, k, v))))(q),
    [q, k, v],
    1e-4,
  );
});

test("jaxpr->ONNX: dot / matmul with batch axes, broadcast batch, vectors and transposed results", async () => {
  const { prims } = await agree(
    (a: Array, b: Array, c: Array, v: Array, w: Array) => [
      np.matmul(a.ref, b.ref),
      np.matmul(a.ref, c.ref),
      np.dot(v.ref, c.ref),
      np.dot(c.ref.transpose(), v.ref),
      np.dot(w.ref, c.ref).transpose(),
      np.matmul(a, b).transpose([0, 2, 1]),
      np.dot(w, c),
    ],
    [randn([2, 3, 4]), randn([2, 4, 5]), randn([4, 5]), randn([4]), randn([6, 4])],
  );
  assert.ok(prims.dot >= 6);
});

test("jaxpr->ONNX: concatenate, split, pad, slice, transpose, reshape, flip, broadcast", async () => {
  const { prims } = await agree(
    (a: Array, b: Array) => {
      const [p, q] = np.split(a.ref, [1], 1);
      return [
        np.concatenate([a.ref, b.ref], 1),
        p,
        q.mul(2),
        np.pad(a.ref, [
          [1, 2],
          [0, 1],
          [3, 0],
        ]),
        a.ref.slice([1, 3], [], [2, 4]),
        a.ref.transpose([2, 0, 1]),
        a.ref.reshape([3, -1]),
        np.flip(a.ref, [0, 2]),
        np.broadcastTo(b.ref.slice([], [0, 1]), [3, 6, 4]).add(a.ref.slice([], [0, 1])),
        np
          .moveaxis(a, 0, 2)
          .reshape([4, 9])
          .add(b.reshape([1, 36]).slice([], [0, 9])),
      ];
    },
    [randn([3, 3, 4]), randn([3, 3, 4])],
  );
  for (const p of ["concatenate", "split", "pad", "shrink", "transpose", "reshape", "flip", "broadcast"])
    assert.ok(prims[p], `exercised ${p}`);
});

test("jaxpr->ONNX: gather (take rows, take along axis 1, one-hot lookup) with int32 indices", async () => {
  const { prims } = await agree(
    (table: Array, idx: Array, labels: Array) => [
      np.take(table.ref, idx.ref, 0),
      np.take(table.ref, idx.ref.reshape([2, 2]), 1),
      np.dot(nn.oneHot(labels, 5).astype(np.float32), table.ref),
      table.slice(idx),
    ],
    [randn([5, 6]), ints([4], 5), ints([7], 5)],
  );
  assert.ok(prims.gather, "exercised gather");
});

test("jaxpr->ONNX: nested jit is flattened; the gradient of a small network agrees", async () => {
  const inner = jit((h: Array, w: Array) => nn.silu(np.dot(h, w)));
  const loss = (w1: Array, w2: Array, x: Array) => np.mean(np.square(np.dot(inner(x, w1), w2)));
  const { prims } = await agree(
    (w1: Array, w2: Array, x: Array) => grad(loss, { argnums: [0, 1] })(w1, w2, x) as unknown as Array[],
    [randn([3, 8]), randn([8, 2]), randn([16, 3])],
    1e-4,
  );
  assert.ok(prims.dot >= 3);
  assert.equal(prims.jit, undefined);
});

test("jaxpr->ONNX: conv (padding, strides, rhs dilation, lhs dilation) matches lax.convGeneralDilated", async () => {
  const x = randn([2, 3, 9, 8]);
  const w = randn([4, 3, 3, 3], 0.3);
  const { prims, stats } = await agree(
    (x: Array, w: Array) => [
      lax.convGeneralDilated(x.ref, w.ref, [1, 1], "SAME"),
      lax.convGeneralDilated(
        x.ref,
        w.ref,
        [2, 2],
        [
          [1, 1],
          [1, 1],
        ],
      ),
      lax.convGeneralDilated(
        x.ref,
        w.ref,
        [1, 2],
        [
          [2, 0],
          [0, 3],
        ],
        { rhsDilation: [2, 1] },
      ),
      lax.convGeneralDilated(
        x.ref,
        w.ref,
        [1, 1],
        [
          [1, 2],
          [2, 1],
        ],
        { lhsDilation: [2, 2] },
      ),
      lax.convGeneralDilated(
        x.ref,
        w.ref,
        [1, 1],
        [
          [-1, 0],
          [0, -1],
        ],
      ),
      lax.convGeneralDilated(
        x,
        w,
        [1, 1],
        [
          [4, 0],
          [0, 0],
        ],
        { lhsDilation: [3, 1], rhsDilation: [1, 2] },
      ),
    ],
    [x, w],
    2e-5,
  );
  assert.equal(prims.conv, 6);
  assert.equal(stats.convs, 6);
  assert.equal(stats.convTransposes, 2, "the two lhs-dilated convs run as ConvTranspose");
});

test("jaxpr->ONNX: a conv with a big kernel and a tiny output (a weight gradient) runs as one MatMul and agrees", async () => {
  const { prims, stats } = await agree(
    (x: Array, w: Array, w2: Array, x2: Array, w3: Array) => [
      lax.convGeneralDilated(
        x.ref,
        w,
        [1, 1],
        [
          [1, 0],
          [0, 1],
        ],
      ),
      lax.convGeneralDilated(
        x.slice([], [0, 3], [0, 16], [0, 16]),
        w2,
        [2, 2],
        [
          [1, 0],
          [0, 1],
        ],
        { rhsDilation: [2, 2] },
      ),
      // Fewer kernel rows (2) than activation rows (6), with a crop and uneven padding: windows of the kernel.
      lax.convGeneralDilated(
        x2,
        w3,
        [1, 1],
        [
          [-1, 2],
          [1, 0],
        ],
      ),
    ],
    [randn([2, 5, 16, 16]), randn([4, 5, 13, 13], 0.1), randn([4, 3, 8, 8], 0.1), randn([6, 5, 12, 12]), randn([2, 5, 11, 11], 0.1)],
    2e-5,
  );
  assert.equal(prims.conv, 3);
  assert.equal(stats.matmuls, 3, "all ran as MatMul");
});

test("jaxpr->ONNX: conv gradients (stride 1 and 2) become Conv / ConvTranspose and agree", async () => {
  const loss = (w: Array, x: Array) => {
    const h = lax.convGeneralDilated(
      x,
      w.ref,
      [2, 2],
      [
        [1, 1],
        [1, 1],
      ],
    );
    const y = lax.convGeneralDilated(np.tanh(h), w.slice([], [0, 4]).transpose([1, 0, 2, 3]), [1, 1], "SAME");
    return np.mean(np.square(y));
  };
  const { prims, stats } = await agree(
    (w: Array, x: Array) => grad(loss, { argnums: [0, 1] })(w, x) as unknown as Array[],
    [randn([4, 4, 3, 3], 0.3), randn([2, 4, 8, 8])],
    1e-4,
  );
  assert.ok(prims.conv >= 5, `forward + backward convs, got ${prims.conv}`);
  assert.ok(stats.convTransposes >= 1, "the input gradient of the stride-2 conv is a ConvTranspose");
});

test("jaxpr->ONNX: with this machine's NCHWc block, convs and their gradients run in onnxruntime's blocked layout and agree", async (t) => {
  const block = await nchwcBlockSize();
  if (block === 0) return t.skip("this onnxruntime has no NCHWc kernels here");
  assert.ok([4, 8, 16].includes(block), `block ${block}`);
  const c = 2 * block;
  const loss = (w: Array, x: Array) => {
    const h = lax.convGeneralDilated(
      x,
      w.ref,
      [2, 2],
      [
        [1, 1],
        [0, 1],
      ],
    );
    const y = lax.convGeneralDilated(np.tanh(h), w, [1, 1], "SAME", { rhsDilation: [2, 1] });
    return np.mean(np.square(y));
  };
  const fn = (w: Array, x: Array) => [loss(w.ref, x.ref), ...(grad(loss, { argnums: [0, 1] })(w, x) as unknown as Array[])];
  const args = () => [randn([c, c, 3, 3], 0.1), randn([2, c, 9, 8])];
  const { stats } = await agree(fn, args(), 1e-4, { nchwcBlock: block });
  // Both forward convs, traced twice (the loss and inside grad), and the stride-1 conv's input gradient
  // (the stride-2 one's is a ConvTranspose; weight gradients are MatMuls).
  assert.equal(stats.nchwcConvs, 5);
  const plain = await agree(fn, args(), 1e-4);
  assert.equal(plain.stats.nchwcConvs, 0, "off unless asked for");
  // Channels the block does not divide stay plain Conv.
  const odd = await agree(fn, [randn([c - 4, c - 4, 3, 3], 0.1), randn([2, c - 4, 9, 8])], 1e-4, { nchwcBlock: block });
  assert.equal(odd.stats.nchwcConvs, 0);
});

test("jaxpr->ONNX: the likelihood's jvp through the velocity MLP and the UNet forward (sampling) agree", async () => {
  await initEngine();
  const cfg: MlpConfig = { dim: 2, hidden: 16, depth: 2, timeEmbDim: 8 };
  const host = initMlp(cfg, new Rng(2));
  const names = Object.keys(host);
  const model = mlpModel(cfg);
  const { prims } = await agree(
    (x: Array, t: Array, e: Array, ...ws: Array[]) => {
      const params = Object.fromEntries(names.map((n, i) => [n, ws[i]]));
      const f = (xx: Array) => model.apply(tree.ref(params), xx, t.ref, null);
      const [v, jv] = jvp(f, [x], [e]) as [Array, Array];
      tree.dispose([params, t]);
      return [v, jv];
    },
    [
      randn([6, 2]),
      np.array(Float32Array.of(0.1, 0.2, 0.3, 0.5, 0.7, 0.9)),
      randn([6, 2]),
      ...names.map((n) => np.array(host[n].data).reshape(host[n].shape)),
    ],
    1e-4,
  );
  assert.ok(prims.sin && prims.cos && prims.dot);
  const ucfg: UnetConfig = { channels: [8, 16], numClasses: 3, timeEmbDim: 8, groups: 4, inChannels: 1, height: 4, width: 6 };
  const uhost = initUnet(ucfg, new Rng(3));
  const unames = Object.keys(uhost);
  const shapes = unetParamShapes(ucfg);
  for (const layout of ["hbwc", "nchw"] as const) {
    await agree(
      (x: Array, t: Array, y: Array, ...ws: Array[]) =>
        unetApply(Object.fromEntries(unames.map((n, i) => [n, ws[i]])), x, t, y, ucfg, layout),
      [
        randn([2, 4, 6, 1]),
        np.array(Float32Array.of(0.2, 0.8)),
        np.array(Int32Array.of(1, 3), { dtype: np.int32 }),
        ...unames.map((n) => np.array(uhost[n].map((v) => v + 0.1)).reshape(shapes[n])),
      ],
      1e-4,
    );
  }
});

test("jaxpr->ONNX: an unknown primitive fails loudly, naming it and the jax-js version", async () => {
  await initEngine();
  const x = randn([5]);
  await assert.rejects(
    traceToOnnx((a: Array) => np.sort(a), [x]),
    (e: Error) => e.message.includes('primitive "sort"') && e.message.includes(JAX_JS_VERSION),
  );
  x.dispose();
});

test("jaxpr->ONNX: the translator's jax-js version is the one package.json pins", () => {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
    dependencies: Record<string, string>;
  };
  assert.equal(
    pkg.dependencies["@jax-js/jax"],
    JAX_JS_VERSION,
    "re-test src/engine/onnx/translate.ts against the new jax-js, then update JAX_JS_VERSION",
  );
});

test("leafPaths names leaves in jax-js flatten order", () => {
  assert.deepEqual(leafPaths([{ b: 1, a: [2, 3] }, 4]), ["0.b", "0.a.0", "0.a.1", "1"]);
});
