// Self-attention (layers.ts) and the UNet options that use it (res blocks per level, attention at
// chosen resolutions): a hand-computed softmax(QK^T/sqrt(d))V, the whole block against a plain
// host loop, pixel-permutation equivariance, both layouts, shapes, config errors, and gradients
// against central finite differences in float64 on the cpu device.
import { test } from "node:test";
import assert from "node:assert/strict";
import { init, initEngine, defaultDevice, jit, np, valueAndGrad, fromHost, toHost, type Array } from "../../../src/engine/index.js";
import { Rng } from "../../../src/core/rng.js";
import { UserError } from "../../../src/core/errors.js";
import { dotProductAttention, selfAttention } from "../../../src/core/models/layers.js";
import type { Params } from "../../../src/core/optim.js";
import { initUnet, unetApply, unetFamily, unetParamShapes, type UnetConfig } from "../../../src/core/models/unet.js";
import { unetForwardBytes, unetTrainBytes } from "../../../src/core/memory.js";

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test("dotProductAttention is softmax(QK^T / sqrt(d)) V on a hand-computed case", async () => {
  await initEngine();
  // q = [[1, 0], [0, 2]], k = [[1, 0], [0, 1], [1, 1]], v = [1, 2, 4]; d = 2.
  // Row 0: scores [1, 0, 1] / sqrt 2; row 1: [0, 2, 2] / sqrt 2.
  const s = Math.SQRT1_2;
  const row = (scores: number[]) => {
    const e = scores.map((z) => Math.exp(z * s));
    const sum = e.reduce((a, b) => a + b, 0);
    return (e[0] * 1 + e[1] * 2 + e[2] * 4) / sum;
  };
  const expected = [row([1, 0, 1]), row([0, 2, 2])];
  // By hand: row 0 weights (e^.7071, 1, e^.7071) / (2 e^.7071 + 1) = (0.40111, 0.19778, 0.40111) -> 2.40111.
  assert.ok(Math.abs(expected[0] - 2.40111) < 1e-4);
  const out = dotProductAttention(
    fromHost(Float32Array.of(1, 0, 0, 2), [1, 2, 2]),
    fromHost(Float32Array.of(1, 0, 0, 1, 1, 1), [1, 3, 2]),
    fromHost(Float32Array.of(1, 2, 4), [1, 3, 1]),
  );
  assert.deepEqual(out.shape, [1, 2, 1]);
  const got = await toHost(out);
  assert.ok(maxAbsDiff(got, expected) < 1e-5, `${got} vs ${expected}`);
});

/** x + proj(MHA(qkv(GN(x)))) with plain loops, x as [B][N][C] (pixels in row-major order). */
function hostSelfAttention(
  host: Record<string, Float32Array>,
  x: Float32Array,
  b: number,
  n: number,
  c: number,
  heads: number,
  groups: number,
) {
  const gw = host["a.norm.weight"];
  const gb = host["a.norm.bias"];
  const per = c / groups;
  const d = c / heads;
  const out = Float32Array.from(x);
  for (let s = 0; s < b; s++) {
    const xn = new Float64Array(n * c);
    for (let g = 0; g < groups; g++) {
      let mean = 0;
      for (let p = 0; p < n; p++) for (let k = 0; k < per; k++) mean += x[(s * n + p) * c + g * per + k];
      mean /= n * per;
      let variance = 0;
      for (let p = 0; p < n; p++) for (let k = 0; k < per; k++) variance += (x[(s * n + p) * c + g * per + k] - mean) ** 2;
      variance /= n * per;
      for (let p = 0; p < n; p++)
        for (let k = 0; k < per; k++) {
          const ch = g * per + k;
          xn[p * c + ch] = ((x[(s * n + p) * c + ch] - mean) / Math.sqrt(variance + 1e-5)) * gw[ch] + gb[ch];
        }
    }
    const qkv = new Float64Array(n * 3 * c);
    for (let p = 0; p < n; p++)
      for (let o = 0; o < 3 * c; o++) {
        let acc = host["a.qkv.bias"][o];
        for (let i = 0; i < c; i++) acc += xn[p * c + i] * host["a.qkv.weight"][i * 3 * c + o];
        qkv[p * 3 * c + o] = acc;
      }
    const att = new Float64Array(n * c);
    for (let h = 0; h < heads; h++)
      for (let p = 0; p < n; p++) {
        const scores = new Float64Array(n);
        for (let r = 0; r < n; r++) {
          let dotp = 0;
          for (let k = 0; k < d; k++) dotp += qkv[p * 3 * c + h * d + k] * qkv[r * 3 * c + c + h * d + k];
          scores[r] = dotp / Math.sqrt(d);
        }
        const mx = Math.max(...scores);
        const e = scores.map((z) => Math.exp(z - mx));
        const sum = e.reduce((a, v) => a + v, 0);
        for (let k = 0; k < d; k++) {
          let acc = 0;
          for (let r = 0; r < n; r++) acc += (e[r] / sum) * qkv[r * 3 * c + 2 * c + h * d + k];
          att[p * c + h * d + k] = acc;
        }
      }
    for (let p = 0; p < n; p++)
      for (let o = 0; o < c; o++) {
        let acc = host["a.proj.bias"][o];
        for (let i = 0; i < c; i++) acc += att[p * c + i] * host["a.proj.weight"][i * c + o];
        out[(s * n + p) * c + o] += acc;
      }
  }
  return out;
}

function attentionParams(rng: Rng, c: number): Record<string, Float32Array> {
  const r = (k: number, scale: number) => Float32Array.from(rng.normals(k), (v) => v * scale);
  return {
    "a.norm.weight": Float32Array.from(rng.normals(c), (v) => 1 + 0.2 * v),
    "a.norm.bias": r(c, 0.2),
    "a.qkv.weight": r(c * 3 * c, 0.5),
    "a.qkv.bias": r(3 * c, 0.2),
    "a.proj.weight": r(c * c, 0.5),
    "a.proj.bias": r(c, 0.2),
  };
}

const shapesOf = (c: number): Record<string, number[]> => ({
  "a.norm.weight": [c],
  "a.norm.bias": [c],
  "a.qkv.weight": [c, 3 * c],
  "a.qkv.bias": [3 * c],
  "a.proj.weight": [c, c],
  "a.proj.bias": [c],
});

/** selfAttention on NHWC data `x` [b, h, w, c], in either internal layout; returns NHWC. */
async function runAttention(
  host: Record<string, Float32Array>,
  x: Float32Array,
  dims: number[],
  heads: number,
  groups: number,
  layout: "hbwc" | "nchw",
) {
  const [b, h, w, c] = dims;
  const params: Params = {};
  for (const [k, s] of Object.entries(shapesOf(c))) params[k] = fromHost(host[k], s);
  const nhwc = fromHost(x, [b, h, w, c]);
  const inner = layout === "nchw" ? nhwc.transpose([0, 3, 1, 2]) : nhwc.transpose([1, 0, 2, 3]);
  const y: Array = selfAttention(params, "a", inner, heads, groups, layout);
  const back = layout === "nchw" ? y.transpose([0, 2, 3, 1]) : y.transpose([1, 0, 2, 3]);
  for (const p of Object.values(params)) p.dispose();
  return toHost(back);
}

test("selfAttention equals a plain host computation (1 and 2 heads, both layouts)", async () => {
  await initEngine();
  const rng = new Rng(7);
  const [b, h, w, c] = [2, 3, 4, 4];
  const host = attentionParams(rng, c);
  const x = rng.normals(b * h * w * c);
  for (const heads of [1, 2]) {
    const expected = hostSelfAttention(host, x, b, h * w, c, heads, 2);
    for (const layout of ["hbwc", "nchw"] as const) {
      const got = await runAttention(host, x, [b, h, w, c], heads, 2, layout);
      assert.ok(maxAbsDiff(got, expected) < 1e-4, `${heads} heads, ${layout}: ${maxAbsDiff(got, expected)}`);
    }
  }
  // Heads matter: the two answers differ.
  assert.ok(maxAbsDiff(hostSelfAttention(host, x, b, h * w, c, 1, 2), hostSelfAttention(host, x, b, h * w, c, 2, 2)) > 1e-3);
});

test("selfAttention is equivariant under a permutation of the pixels", async () => {
  await initEngine();
  const rng = new Rng(11);
  const [b, h, w, c] = [2, 4, 4, 8];
  const host = attentionParams(rng, c);
  const x = rng.normals(b * h * w * c);
  const n = h * w;
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const permute = (a: Float32Array) => {
    const out = new Float32Array(a.length);
    for (let s = 0; s < b; s++)
      for (let p = 0; p < n; p++) out.set(a.subarray((s * n + perm[p]) * c, (s * n + perm[p] + 1) * c), (s * n + p) * c);
    return out;
  };
  const y = await runAttention(host, x, [b, h, w, c], 2, 4, "hbwc");
  const yPermuted = await runAttention(host, permute(x), [b, h, w, c], 2, 4, "hbwc");
  assert.ok(maxAbsDiff(yPermuted, permute(y)) < 1e-5);
  // Not trivially so: the permutation moves pixels and the block changes them.
  assert.ok(maxAbsDiff(permute(x), x) > 0.1 && maxAbsDiff(y, x) > 0.1);
});

const attn: UnetConfig = {
  channels: [8, 16, 16],
  numClasses: 3,
  timeEmbDim: 8,
  groups: 4,
  inChannels: 3,
  height: 16,
  width: 16,
  resBlocks: 2,
  attention: [8, 4],
  attentionHeads: 2,
};

test("res blocks and attention add exactly their parameters; the defaults keep the old names", () => {
  const plain: UnetConfig = { channels: [8, 16, 16], numClasses: 3, timeEmbDim: 8, groups: 4, inChannels: 3, height: 16, width: 16 };
  const base = unetParamShapes(plain);
  assert.deepEqual(unetParamShapes({ ...plain, resBlocks: 1, attention: [], attentionHeads: 1 }), base);
  const shapes = unetParamShapes(attn);
  for (const name of Object.keys(base)) assert.deepEqual(shapes[name], base[name], name);
  const added = Object.keys(shapes).filter((k) => !(k in base));
  // A second res block in each of the 5 stages, and attention after both blocks of the stages at
  // 8 px (level 1: down.1, up.1) and 4 px (level 2: mid): 3 stages x 2 blocks x 6 tensors.
  for (const stage of ["down.0", "down.1", "mid", "up.1", "up.0"]) assert.ok(added.includes(`${stage}.res1.conv1.weight`), stage);
  for (const stage of ["down.1", "mid", "up.1"])
    for (const a of ["attn", "attn1"]) {
      assert.deepEqual(shapes[`${stage}.${a}.qkv.weight`], [16, 48]);
      assert.deepEqual(shapes[`${stage}.${a}.proj.weight`], [16, 16]);
    }
  assert.ok(!added.some((k) => k.startsWith("down.0.attn") || k.startsWith("up.0.attn")));
  assert.equal(added.filter((k) => k.includes(".attn")).length, 3 * 2 * 6);
  // Zero output projections: a fresh network still starts at v = 0 and each attention as the identity.
  const init = initUnet(attn, new Rng(1));
  assert.ok(init["mid.attn1.proj.weight"].every((v) => v === 0));
  assert.match(unetFamily.describe(attn), /2 res blocks · attention at 8, 4 \(2 heads\)/);
  // Memory estimates count the extra blocks and each head's N x N attention matrices.
  assert.equal(unetTrainBytes({ ...plain, resBlocks: 1, attention: [] }, 8), unetTrainBytes(plain, 8));
  const oneBlockAttn = { ...plain, attention: [16] };
  assert.ok(unetForwardBytes({ ...oneBlockAttn, attentionHeads: 4 }, 8) - unetForwardBytes(oneBlockAttn, 8) >= 4 * 8 * 3 * 3 * 256 ** 2);
  assert.ok(unetTrainBytes(attn, 8) > unetTrainBytes({ ...plain, resBlocks: 2 }, 8));
  assert.ok(unetTrainBytes({ ...plain, resBlocks: 2 }, 8) > unetTrainBytes(plain, 8));
});

test("bad res-block and attention settings throw UserError naming the fix", () => {
  const errs: [Partial<UnetConfig>, RegExp][] = [
    [{ attention: [12] }, /--attention 12: no UNet level is 12 pixels high \(the levels are 16, 8, 4\)/],
    [{ attentionHeads: 3 }, /--attention-heads 3 does not divide the 16 channels at resolution 8/],
    [{ resBlocks: 0 }, /--res-blocks must be a positive integer/],
  ];
  for (const [patch, re] of errs)
    assert.throws(
      () => unetParamShapes({ ...attn, ...patch }),
      (e: unknown) => e instanceof UserError && re.test(e.message),
    );
  // A checkpoint config with a bad field is refused by name; one without the fields reads as before.
  const { resBlocks: _r, attention: _a, attentionHeads: _h, ...old } = attn;
  assert.deepEqual(unetFamily.parseConfig(old, "ckpt.json"), old);
  assert.deepEqual(unetFamily.parseConfig({ ...old, attention: [] }, "ckpt.json"), old);
  assert.deepEqual(unetFamily.parseConfig(attn, "ckpt.json"), attn);
  assert.throws(() => unetFamily.parseConfig({ ...attn, resBlocks: "2" }, "ckpt.json"), /resBlocks missing or invalid/);
  assert.throws(() => unetFamily.parseConfig({ ...attn, attention: [5] }, "ckpt.json"), /no UNet level is 5 pixels high/);
});

test("a UNet with res blocks and attention maps NHWC to NHWC, the same in both layouts", async () => {
  await initEngine();
  const rng = new Rng(3);
  const host = initUnet(attn, rng);
  for (const w of Object.values(host)) for (let i = 0; i < w.length; i++) w[i] += 0.05 * rng.normal();
  const shapes = unetParamShapes(attn);
  const B = 2;
  const x = rng.normals(B * 16 * 16 * 3);
  const run = (layout: "hbwc" | "nchw") => {
    const params: Params = {};
    for (const [k, s] of Object.entries(shapes)) params[k] = fromHost(host[k], s);
    const v = unetApply(
      params,
      fromHost(x, [B, 16, 16, 3]),
      fromHost(Float32Array.of(0.3, 0.8), [B]),
      np.array(Int32Array.of(1, 3), { dtype: np.int32 }),
      attn,
      layout,
    );
    assert.deepEqual(v.shape, [B, 16, 16, 3]);
    return toHost(v);
  };
  const a = await run("hbwc");
  const b = await run("nchw");
  assert.ok(a.every(Number.isFinite));
  assert.ok(maxAbsDiff(a, b) < 1e-4, `layouts differ by ${maxAbsDiff(a, b)}`);
  // Attention is used: changing one attention weight changes the output.
  host["mid.attn.qkv.weight"][0] += 1;
  const c = await run("hbwc");
  assert.ok(maxAbsDiff(a, c) > 1e-5);
});

test("UNet with res blocks and attention: gradients match finite differences (cpu, float64)", async () => {
  await init("cpu");
  const previous = defaultDevice();
  defaultDevice("cpu");
  try {
    const cfg: UnetConfig = {
      channels: [4, 8],
      numClasses: 2,
      timeEmbDim: 4,
      groups: 2,
      inChannels: 1,
      height: 4,
      width: 4,
      resBlocks: 2,
      attention: [2, 4],
      attentionHeads: 2,
    };
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
    const objective = (p: Params, x: Array) =>
      np.sum(
        unetApply(p, x, f64([0.25, 0.7], [B]), np.array(Int32Array.of(1, cfg.numClasses), { dtype: np.int32 }), cfg).mul(
          f64(rData, [B, 4, 4, 1]),
        ),
      );
    const [, [grads, gx]] = jit(valueAndGrad(objective, { argnums: [0, 1] }))(makeParams(), f64(xData, [B, 4, 4, 1])) as unknown as [
      Array,
      [Params, Array],
    ];
    const value = jit(objective);
    const h = 1e-6;
    const close = (fd: number, g: number, what: string) =>
      assert.ok(Math.abs(fd - g) < 1e-5 * Math.max(1, Math.abs(fd)), `${what}: autodiff ${g} vs fd ${fd}`);
    for (const name of [
      "down.0.attn.qkv.weight",
      "down.0.attn1.norm.weight",
      "mid.attn.proj.weight",
      "mid.res1.conv1.weight",
      "up.0.attn1.qkv.bias",
    ]) {
      const g = grads[name].ref.dataSync();
      for (const index of [0, Math.floor(g.length / 2), g.length - 1]) {
        const plus = value(makeParams(name, index, h), f64(xData, [B, 4, 4, 1])).dataSync()[0];
        const minus = value(makeParams(name, index, -h), f64(xData, [B, 4, 4, 1])).dataSync()[0];
        close((plus - minus) / (2 * h), g[index], `${name}[${index}]`);
      }
    }
    const gxHost = gx.dataSync();
    for (const index of [0, 5, 17, 31]) {
      const xp = Float64Array.from(xData);
      const xm = Float64Array.from(xData);
      xp[index] += h;
      xm[index] -= h;
      const fd =
        (value(makeParams(), f64(xp, [B, 4, 4, 1])).dataSync()[0] - value(makeParams(), f64(xm, [B, 4, 4, 1])).dataSync()[0]) / (2 * h);
      close(fd, gxHost[index], `x[${index}]`);
    }
    for (const a of Object.values(grads)) a.dispose();
  } finally {
    defaultDevice(previous);
  }
});
