// UNet building blocks and the assembled network: im2col convolution against the engine's
// reference convolution, shapes, the null-class (guidance) label, config errors, and
// gradients against central finite differences in float64 on the cpu device.
import { test } from "node:test";
import assert from "node:assert/strict";
import { init, initEngine, defaultDevice, jit, lax, np, valueAndGrad, fromHost, toHost } from "../../../src/engine/index.js";
import { Rng } from "../../../src/core/rng.js";
import { UserError } from "../../../src/core/errors.js";
import { conv2d, groupNorm } from "../../../src/core/models/layers.js";
import type { Params } from "../../../src/core/optim.js";
import { initUnet, unetApply, unetParamCount, unetParamShapes, type UnetConfig } from "../../../src/core/models/unet.js";

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test("im2col conv2d equals lax.convGeneralDilated (3x3 same, 3x3 stride 2, 1x1, 1x1 stride 2)", async () => {
  await initEngine();
  const rng = new Rng(11);
  const [B, H, W, C, O] = [2, 6, 8, 3, 5];
  const x = rng.normals(B * H * W * C);
  for (const { k, stride } of [
    { k: 3, stride: 1 },
    { k: 3, stride: 2 },
    { k: 1, stride: 1 },
    { k: 1, stride: 2 },
  ]) {
    const wHwio = rng.normals(k * k * C * O); // [k, k, C, O] = im2col layout [(ky, kx, c), o]
    const bias = rng.normals(O);
    const params: Params = { "c.weight": fromHost(wHwio, [k * k * C, O]), "c.bias": fromHost(bias, [O]) };
    // conv2d works on [H, B, W, C]; compare in NHWC.
    const mine = await toHost(
      conv2d(params, "c", fromHost(x, [B, H, W, C]).transpose([1, 0, 2, 3]), { kernel: k, stride }).transpose([1, 0, 2, 3]),
    );
    const p = (k - 1) >> 1;
    const lhs = fromHost(x, [B, H, W, C]).transpose([0, 3, 1, 2]);
    const rhs = fromHost(wHwio, [k, k, C, O]).transpose([3, 2, 0, 1]);
    const ref = lax
      .convGeneralDilated(
        lhs,
        rhs,
        [stride, stride],
        [
          [p, p],
          [p, p],
        ],
      )
      .transpose([0, 2, 3, 1])
      .add(fromHost(bias, [O]));
    const refHost = await toHost(ref);
    assert.equal(mine.length, (B * H * W * O) / (stride * stride));
    assert.ok(maxAbsDiff(mine, refHost) < 1e-4, `k=${k} stride=${stride}: diff ${maxAbsDiff(mine, refHost)}`);
    for (const a of Object.values(params)) a.dispose();
  }
});

const tiny: UnetConfig = { channels: [8, 16, 16], numClasses: 10, timeEmbDim: 16, groups: 4, inChannels: 1, height: 28, width: 28 };

test("UNet maps [B, 28, 28, 1] to the same shape; labels (incl. the null class) change the output", async () => {
  await initEngine();
  const rng = new Rng(5);
  const host = initUnet(tiny, rng);
  // The zero-initialised output conv would make every label give v = 0; perturb it.
  for (const w of Object.values(host)) for (let i = 0; i < w.length; i++) w[i] += 0.05 * rng.normal();
  const shapes = unetParamShapes(tiny);
  assert.deepEqual(Object.keys(host).sort(), Object.keys(shapes).sort());
  assert.equal(
    unetParamCount(tiny),
    Object.values(host).reduce((n, a) => n + a.length, 0),
  );
  const B = 2;
  const x = rng.normals(B * 28 * 28);
  const run = async (labels: number[]) => {
    const params: Params = {};
    for (const [k, s] of Object.entries(shapes)) params[k] = fromHost(host[k], s);
    const v = unetApply(
      params,
      fromHost(x, [B, 28, 28, 1]),
      fromHost(Float32Array.of(0.3, 0.8), [B]),
      np.array(Int32Array.from(labels), { dtype: np.int32 }),
      tiny,
    );
    assert.deepEqual(v.shape, [B, 28, 28, 1]);
    return toHost(v);
  };
  const cond = await run([3, 3]);
  const uncond = await run([tiny.numClasses, tiny.numClasses]);
  assert.ok(cond.every(Number.isFinite) && uncond.every(Number.isFinite));
  assert.ok(maxAbsDiff(cond, uncond) > 1e-3, "the null class should give a different field");
});

test("freshly initialised UNet outputs zero (zero last conv) and is seed-deterministic", () => {
  const a = initUnet(tiny, new Rng(9));
  const b = initUnet(tiny, new Rng(9));
  assert.ok(a["out.conv.weight"].every((v) => v === 0));
  assert.deepEqual(a["stem.weight"], b["stem.weight"]);
  assert.notDeepEqual(a["stem.weight"], initUnet(tiny, new Rng(10))["stem.weight"]);
});

test("bad UNet configs throw UserError naming the fix", () => {
  assert.throws(
    () => unetParamShapes({ ...tiny, channels: [8, 10] }),
    (e: unknown) => e instanceof UserError && /multiple of groups/.test(e.message),
  );
  assert.throws(
    () => unetParamShapes({ ...tiny, height: 30 }),
    (e: unknown) => e instanceof UserError && /divisible by 4/.test(e.message),
  );
  assert.throws(() => unetParamShapes({ ...tiny, channels: [8] }), UserError);
});

test("UNet gradients match finite differences (cpu, float64)", async () => {
  await init("cpu");
  const previous = defaultDevice();
  defaultDevice("cpu");
  try {
    const cfg: UnetConfig = { channels: [4, 8], numClasses: 2, timeEmbDim: 4, groups: 2, inChannels: 1, height: 4, width: 4 };
    const rng = new Rng(21);
    const host = initUnet(cfg, rng);
    for (const w of Object.values(host)) for (let i = 0; i < w.length; i++) w[i] += 0.3 * rng.normal();
    const shapes = unetParamShapes(cfg);
    const B = 2;
    const xData = Float64Array.from(rng.normals(B * 16));
    const rData = Float64Array.from(rng.normals(B * 16));
    const f64 = (d: ArrayLike<number>, shape: number[]) => np.array(Float64Array.from(d)).reshape(shape);
    const makeParams = (name?: string, index = 0, delta = 0): Params => {
      const out: Params = {};
      for (const [k, s] of Object.entries(shapes)) {
        const d = Float64Array.from(host[k]);
        if (k === name) d[index] += delta;
        out[k] = f64(d, s);
      }
      return out;
    };
    const objective = (p: Params) =>
      np.sum(
        unetApply(
          p,
          f64(xData, [B, 4, 4, 1]),
          f64([0.25, 0.7], [B]),
          np.array(Int32Array.of(1, cfg.numClasses), { dtype: np.int32 }),
          cfg,
        ).mul(f64(rData, [B, 4, 4, 1])),
      );
    const [, grads] = jit(valueAndGrad(objective))(makeParams());
    // Jitted so the 2 x 18 finite-difference evaluations stay fast on the cpu device.
    const value = jit(objective);
    const h = 1e-6;
    for (const name of [
      "stem.weight",
      "down.0.res.norm1.weight",
      "down.0.res.conv1.weight",
      "down.0.downsample.weight",
      "mid.res.skip.weight",
      "up.0.upsample.bias",
      "time.0.weight",
      "class.weight",
      "out.conv.weight",
    ]) {
      const g = grads[name].ref.dataSync();
      for (const index of [0, g.length - 1]) {
        const plus = value(makeParams(name, index, h)).dataSync()[0];
        const minus = value(makeParams(name, index, -h)).dataSync()[0];
        const fd = (plus - minus) / (2 * h);
        assert.ok(Math.abs(fd - g[index]) < 1e-5 * Math.max(1, Math.abs(fd)), `${name}[${index}]: autodiff ${g[index]} vs fd ${fd}`);
      }
    }
    for (const a of Object.values(grads)) a.dispose();
  } finally {
    defaultDevice(previous);
  }
});

test("groupNorm (one-pass statistics, folded affine) equals the centred formula in float64, both layouts, with a mean 10x the spread", async () => {
  await initEngine();
  const rng = new Rng(5);
  const [B, C, H, W, G] = [3, 8, 5, 4, 4];
  const cg = C / G;
  // Per-channel offsets up to 10 standard deviations: where E[x^2] - E[x]^2 cancels most.
  const x = Float64Array.from(rng.normals(B * C * H * W), (v, i) => 10 * Math.sin(i % 7) + v);
  const weight = rng.normals(C);
  const bias = rng.normals(C);
  const at = (b: number, c: number, h: number, w: number) => ((b * C + c) * H + h) * W + w; // NCHW
  const want = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let g = 0; g < G; g++) {
      const idx: number[] = [];
      for (let c = g * cg; c < (g + 1) * cg; c++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) idx.push(at(b, c, h, w));
      const mean = idx.reduce((s, i) => s + x[i], 0) / idx.length;
      const variance = idx.reduce((s, i) => s + (x[i] - mean) ** 2, 0) / idx.length;
      for (const i of idx) {
        const c = Math.floor(i / (H * W)) % C;
        want[i] = ((x[i] - mean) / Math.sqrt(variance + 1e-5)) * weight[c] + bias[c];
      }
    }
  const params: Params = { "n.weight": fromHost(weight, [C]), "n.bias": fromHost(bias, [C]) };
  const nchw = await toHost(groupNorm(params, "n", fromHost(Float32Array.from(x), [B, C, H, W]), G, 1e-5, "nchw"));
  const hbwc = await toHost(
    groupNorm(params, "n", fromHost(Float32Array.from(x), [B, C, H, W]).transpose([2, 0, 3, 1]), G, 1e-5, "hbwc").transpose([1, 3, 0, 2]),
  );
  // float32 rounding of E[x^2] ~ 100 is ~6e-6 of a unit variance; measured error 2-4e-7.
  assert.ok(maxAbsDiff(nchw, want) < 1e-5, `nchw: ${maxAbsDiff(nchw, want)}`);
  assert.ok(maxAbsDiff(hbwc, want) < 1e-5, `hbwc: ${maxAbsDiff(hbwc, want)}`);
  // A constant group (variance 0, or slightly negative after cancellation) gives the shift, not NaN
  // (x a and mean a cancel at a = w / sqrt(eps); measured error 4e-4).
  const flat = await toHost(groupNorm(params, "n", np.full([B, C, H, W], 37.25), G, 1e-5, "nchw"));
  for (let i = 0; i < flat.length; i++) {
    const c = Math.floor(i / (H * W)) % C;
    assert.ok(Math.abs(flat[i] - bias[c]) < 2e-3, `constant input at ${i}: ${flat[i]} vs ${bias[c]}`);
  }
});
