// The translator's graph optimisations (TranslateOptions.optimize): the optimised graph must compute
// what the plain translation computes, and have the structure each optimisation is for.
import { test } from "node:test";
import assert from "node:assert/strict";
import { initEngine, grad, jit, np, tree, type Array } from "../../../src/engine/index.js";
import { upsample2x, conv2d, groupNorm, silu } from "../../../src/core/models/layers.js";
import { initMlp, mlpModel, type MlpConfig } from "../../../src/core/models/mlp.js";
import { traceToOnnx, type TracedOnnx } from "../../../src/engine/onnx/trace.js";
import { decodeOnnxModel, decodeOnnxNodes } from "../../../src/engine/onnx/proto.js";
import { createOrtSession, ort } from "../../../src/engine/onnx/session.js";
import { traceTrainStep } from "../../../src/pipelines/trainers.js";
import { DEFAULT_ADAM } from "../../../src/core/optim.js";
import { Rng } from "../../../src/core/rng.js";

const rng = new Rng(5);
const randn = (shape: number[]): Array => np.array(rng.normals(shape.reduce((a, b) => a * b, 1))).reshape(shape);

async function runGraph(g: TracedOnnx, feeds: Record<string, ort.Tensor>): Promise<Float32Array[]> {
  const s = await createOrtSession(g.bytes, { threads: 1 });
  const r = await s.run(Object.fromEntries(Object.entries(feeds).filter(([k]) => s.inputNames.includes(k))));
  await s.release();
  return g.outputs.map((o) => r[o.name].data as Float32Array);
}

function assertClose(a: Float32Array[], b: Float32Array[], tol: number, what: string): void {
  assert.equal(a.length, b.length);
  a.forEach((x, i) => {
    assert.equal(x.length, b[i].length);
    let scale = 1;
    for (const v of b[i]) scale = Math.max(scale, Math.abs(v));
    for (let k = 0; k < x.length; k++)
      assert.ok(Math.abs(x[k] - b[i][k]) <= tol * scale, `${what}: output ${i}[${k}] ${x[k]} vs ${b[i][k]}`);
  });
}

const countOps = (g: TracedOnnx, op: string) => decodeOnnxNodes(g.bytes).filter((n) => n.op === op).length;

/**
 * Runs the optimised and the plain translation of `fn` on `args` (fed by their leaves in flatten
 * order) and checks them against each other and against jax-js's own jit of `fn`, which consumes
 * `args`. Returns the optimised graph's outputs.
 */
async function assertSameNumbers(
  fn: (...args: never[]) => unknown,
  args: unknown[],
  opt: TracedOnnx,
  plain: TracedOnnx,
  tol: { plain: number; jax: number },
): Promise<Float32Array[]> {
  const feeds: Record<string, ort.Tensor> = {};
  const leaves = tree.flatten(args)[0] as Array[];
  for (let i = 0; i < leaves.length; i++)
    feeds[opt.inputs[i].name] = new ort.Tensor("float32", (await leaves[i].ref.data()) as Float32Array, leaves[i].shape);
  const a = await runGraph(opt, feeds);
  assertClose(a, await runGraph(plain, feeds), tol.plain, "optimized vs plain");
  const want = (jit(fn as never) as unknown as (...x: unknown[]) => Array | Array[])(...args);
  const outs = Array.isArray(want) ? want : [want];
  assertClose(a, await Promise.all(outs.map(async (v) => (await v.data()) as Float32Array)), tol.jax, "onnx vs jax");
  return a;
}

test("optimize: nearest upsampling (and its gradient) becomes Resize, not Expand, with the same numbers", async () => {
  await initEngine();
  const x = randn([2, 3, 4, 5]);
  const params = { "c.weight": randn([27, 2]), "c.bias": randn([2]) };
  // A conv after the upsample, so the gradient flows back through it.
  const loss = (p: typeof params, xx: Array) => np.sum(np.square(conv2d(p, "c", upsample2x(xx, "nchw"), { layout: "nchw" })));
  const fn = (p: typeof params, xx: Array) => [upsample2x(xx.ref, "nchw"), ...Object.values(grad(loss)(p, xx) as typeof params)];
  const opt = await traceToOnnx(fn as never, [params, x]);
  const plain = await traceToOnnx(fn as never, [params, x], { optimize: false });
  assert.equal(countOps(opt, "Resize"), 2, "one Resize per upsample (the output and the loss)");
  assert.equal(countOps(opt, "Expand"), 0, "no Expand left");
  assert.ok(countOps(plain, "Expand") >= 1, "the plain translation expands");
  await assertSameNumbers(fn as never, [params, x], opt, plain, { plain: 1e-6, jax: 1e-5 });
});

test("optimize: the gradient of nearest upsampling (a 2x2 block sum) is one AveragePool times 4, with the same numbers", async () => {
  await initEngine();
  const w = randn([2, 3, 8, 10]);
  const x = randn([2, 3, 4, 5]);
  const fn = (ww: Array, xx: Array) => grad((y: Array) => np.sum(np.square(upsample2x(y, "nchw").mul(ww))))(xx);
  const opt = await traceToOnnx(fn as never, [w, x]);
  const plain = await traceToOnnx(fn as never, [w, x], { optimize: false });
  assert.equal(countOps(opt, "AveragePool"), 1, "one AveragePool for the upsample's gradient");
  assert.equal(countOps(plain, "AveragePool"), 0);
  assert.ok(countOps(plain, "ReduceSum") > countOps(opt, "ReduceSum"), "the block sum's ReduceSum is gone");
  await assertSameNumbers(fn as never, [w, x], opt, plain, { plain: 1e-6, jax: 1e-5 });
});

test("optimize: the MLP training step's weight-gradient transposes feed MatMul directly, Sub for add-of-neg, no output copies; state after a step unchanged", async () => {
  await initEngine();
  const cfg: MlpConfig = { dim: 2, hidden: 16, depth: 2, timeEmbDim: 8 };
  const params = initMlp(cfg, new Rng(0));
  const opts = { model: mlpModel(cfg), params, sampleShape: [2], adam: DEFAULT_ADAM, emaDecay: 0.99 };
  const shapes = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.shape]));
  const n = 8;
  const opt = await traceTrainStep(opts, shapes, n);
  const plain = await traceTrainStep(opts, shapes, n, { optimize: false });
  // A Transpose consumed by a Reshape blocks onnxruntime's Transpose+MatMul fusion.
  const transposeIntoReshape = (g: TracedOnnx) => {
    const nodes = decodeOnnxNodes(g.bytes);
    const tOut = new Set(nodes.filter((x) => x.op === "Transpose").flatMap((x) => x.outputs));
    return nodes.filter((x) => x.op === "Reshape" && tOut.has(x.inputs[0])).length;
  };
  assert.ok(transposeIntoReshape(plain) > 0, "the plain translation reshapes transposes");
  assert.equal(transposeIntoReshape(opt), 0);
  assert.ok(opt.stats.nodes < plain.stats.nodes, `${opt.stats.nodes} nodes vs ${plain.stats.nodes}`);
  // Subtractions as Sub, not Add of a Neg; graph outputs without an Identity copy each.
  assert.equal(countOps(plain, "Sub"), 0);
  assert.ok(
    countOps(opt, "Sub") > 0 && countOps(opt, "Neg") < countOps(plain, "Neg"),
    `Neg ${countOps(opt, "Neg")} vs ${countOps(plain, "Neg")}`,
  );
  assert.ok(countOps(opt, "Identity") < countOps(plain, "Identity"));
  const feeds: Record<string, ort.Tensor> = {};
  const flat = (f: (x: number) => number) => Float32Array.from(Object.values(params).flatMap((p) => Array.from(p.data, f)));
  for (const g of ["params", "m", "v", "ema"]) {
    const data = flat(g === "v" ? (d) => d * d : (d) => d);
    feeds[`0.${g}.flat`] = new ort.Tensor("float32", data, [data.length]);
  }
  const t = rng.uniforms(n);
  feeds["1"] = new ort.Tensor("float32", rng.normals(2 * n), [n, 2]);
  feeds["2"] = new ort.Tensor("float32", rng.normals(2 * n), [n, 2]);
  feeds["3"] = new ort.Tensor("float32", t, [n]);
  feeds["4"] = new ort.Tensor(
    "float32",
    Float32Array.from({ length: 4 * n }, (_, i) => [1 - t[i >> 2], t[i >> 2], -1, 1][i % 4]),
    [n, 4],
  );
  feeds["5"] = new ort.Tensor("int32", new Int32Array(n), [n]);
  feeds["6"] = new ort.Tensor("float32", Float32Array.of(1e-3), []);
  feeds["7"] = new ort.Tensor("float32", Float32Array.of(0.9), []);
  assertClose(await runGraph(opt, feeds), await runGraph(plain, feeds), 1e-6, "optimized vs plain step");
});

test("optimize: the stable sigmoid chain of silu becomes one Sigmoid and silu's gradient m (s + y (1 - s)); same numbers, finite far out", async () => {
  await initEngine();
  // Inputs across both saturated tails (where the chain caps e^-x and Sigmoid returns exactly 0 or 1).
  const xs = Float32Array.from([-1e4, -200, -88.5, -30, -17, -5, -1, -0.1, 0, 0.3, 2, 9, 17, 40, 1e4, 3]);
  const x = np.array(xs).reshape([4, 4]);
  const w = randn([4, 4]);
  const loss = (xx: Array, ww: Array) => np.sum(silu(xx).mul(ww));
  const fn = (xx: Array, ww: Array) => [silu(xx.ref), grad(loss)(xx, ww)];
  const opt = await traceToOnnx(fn as never, [x, w]);
  const plain = await traceToOnnx(fn as never, [x, w], { optimize: false });
  assert.equal(countOps(opt, "Sigmoid"), 1, "the output's silu and the gradient's forward pass share one Sigmoid");
  for (const op of ["Exp", "Where", "Less", "Reciprocal", "Min", "Neg"]) assert.equal(countOps(opt, op), 0, `no ${op} left`);
  // silu's whole gradient m (s + y (1 - s)), y = x s the forward's output: one Sub and one Add.
  assert.equal(countOps(opt, "Sub"), 1);
  assert.equal(countOps(opt, "Add"), 1);
  assert.equal(countOps(plain, "Sigmoid"), 0);
  assert.ok(opt.stats.nodes < plain.stats.nodes - 6, `${opt.stats.nodes} nodes vs ${plain.stats.nodes}`);
  // 1 - s rounds to a multiple of 6e-8 in float32 above x = 15, so x s (1 - s) moves by ~1e-6 there.
  const a = await assertSameNumbers(fn as never, [x, w], opt, plain, { plain: 5e-6, jax: 5e-6 });
  for (const out of a) assert.ok(out.every(Number.isFinite));
});

test("optimize: a computation repeated in the trace (also with commuted operands) is done once", async () => {
  await initEngine();
  const fn = (a: Array, b: Array) => [np.exp(a.ref.mul(b.ref)).add(np.exp(b.ref.mul(a.ref))), a.mul(b)];
  const args = [randn([3, 4]), randn([3, 4])];
  const opt = await traceToOnnx(fn as never, args);
  const plain = await traceToOnnx(fn as never, args, { optimize: false });
  assert.equal(countOps(plain, "Mul"), 3);
  assert.equal(countOps(plain, "Exp"), 2);
  assert.equal(countOps(opt, "Mul"), 1, "a * b and b * a are one Mul");
  assert.equal(countOps(opt, "Exp"), 1);
  await assertSameNumbers(fn as never, args, opt, plain, { plain: 1e-6, jax: 1e-6 });
});

test("optimize: a reshape of a broadcast value expands only the axes it merges (GroupNorm's per-group terms), with the same numbers", async () => {
  await initEngine();
  const [B, G, cg, H, W] = [2, 3, 4, 5, 6];
  const x = randn([B, G * cg, H, W]);
  const s = randn([B, G]);
  // A per-(sample, group) value broadcast over [B, G, cg, H, W], then viewed as [B, C, H, W].
  const fn = (xx: Array, ss: Array) => xx.add(np.broadcastTo(ss.reshape([B, G, 1, 1, 1]), [B, G, cg, H, W]).reshape([B, G * cg, H, W]));
  const opt = await traceToOnnx(fn as never, [x, s]);
  const plain = await traceToOnnx(fn as never, [x, s], { optimize: false });
  assert.equal(countOps(plain, "Expand"), 1, "the plain translation expands the broadcast value to full size");
  // The optimised graph expands [B, G, 1, 1, 1] to [B, G, cg, 1, 1] only: its Expand target is that shape.
  const { graph } = decodeOnnxModel(opt.bytes);
  const expands = graph.node.filter((n) => n.op_type === "Expand");
  assert.equal(expands.length, 1);
  const target = graph.initializer?.find((t) => t.name === expands[0].input?.[1])?.raw_data;
  assert.ok(target, "the Expand's shape is a constant");
  const dims = new BigInt64Array(target.buffer.slice(target.byteOffset, target.byteOffset + target.byteLength));
  assert.deepEqual(Array.from(dims, Number), [B, G, cg, 1, 1]);
  await assertSameNumbers(fn as never, [x, s], opt, plain, { plain: 0, jax: 0 });
});

test("optimize: GroupNorm's x a + b (forward and gradient) is one BatchNormalization each, with the same numbers", async () => {
  await initEngine();
  const [B, C, H, W, G] = [2, 8, 5, 6, 4];
  const x = randn([B, C, H, W]);
  const params = { "n.weight": randn([C]), "n.bias": randn([C]) };
  const ct = randn([B, C, H, W]);
  const loss = (p: typeof params, xx: Array) => np.sum(silu(groupNorm(p, "n", xx, G, 1e-5, "nchw")).mul(ct.ref));
  const fn = (p: typeof params, xx: Array) => {
    const [gp, gx] = grad(loss, { argnums: [0, 1] } as never)(p, xx) as unknown as [typeof params, Array];
    return [...Object.values(gp), gx];
  };
  const opt = await traceToOnnx(fn as never, [params, x]);
  const plain = await traceToOnnx(fn as never, [params, x], { optimize: false });
  assert.equal(countOps(opt, "BatchNormalization"), 2, "the forward's x a + b and the input gradient's x k + k0");
  assert.equal(countOps(plain, "BatchNormalization"), 0);
  await assertSameNumbers(fn as never, [params, x], opt, plain, { plain: 1e-6, jax: 1e-5 });
});
