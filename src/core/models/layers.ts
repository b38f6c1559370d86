// Shared network building blocks over flat parameter records (NHWC images, [in, out] dense weights).
// Every function consumes its array arguments (jax-js ownership) and only borrows `params`
// entries (it takes `.ref` of what it reads), so callers dispose the record once at the end.
import { lax, np, nn, type Array } from "../../engine/index.js";
import type { Rng } from "../rng.js";
import type { Params } from "../optim.js";

/** t in [0, 1] is scaled up before the sinusoidal embedding so its frequencies span the unit interval. */
export const TIME_EMBED_SCALE = 1000;

/**
 * The time features every model uses: transformer-style [sin(s w_k), cos(s w_k)] of
 * s = TIME_EMBED_SCALE t, with w_k = exp(-ln(10000) k / (dim/2)). Consumes t ([B]); returns [B, dim].
 */
export function timeEmbedding(t: Array, dim: number): Array {
  const half = Math.floor(dim / 2);
  const freqs = sinusoidalFrequencies(dim);
  const args = t
    .mul(TIME_EMBED_SCALE)
    .reshape([-1, 1])
    .mul(np.array(Array.from(freqs), { dtype: t.dtype }).reshape([1, half]));
  return np.concatenate([np.sin(args.ref), np.cos(args)], 1);
}

/** The frequencies used by timeEmbedding (also needed by the ONNX exporter). */
export function sinusoidalFrequencies(dim: number): Float32Array {
  const half = Math.floor(dim / 2);
  const freqs = new Float32Array(half);
  for (let k = 0; k < half; k++) freqs[k] = Math.exp((-Math.log(10000) * k) / half);
  return freqs;
}

/** x @ W + b with `${prefix}.weight` [in, out] and `${prefix}.bias` [out]. x: [..., in]. */
export function dense(params: Params, prefix: string, x: Array): Array {
  return np.dot(x, params[`${prefix}.weight`].ref).add(params[`${prefix}.bias`].ref);
}

/**
 * Logistic sigmoid 1 / (1 + e^-x) with e^-x capped at e^88 (finite in float32): value and gradient
 * are finite for every finite x. jax-js's nn.sigmoid lets e^-x overflow below x = -88.7, and its
 * gradient there is 0 * inf = NaN. The cap changes sigma only where it is below 6.1e-39 (x < -88),
 * by less than that, so silu(x) = x sigma(x) is off by at most 6.1e-39 |x|. Built from neg, min, exp,
 * add and reciprocal: one op more than nn.sigmoid (an exact form through e^-|x| measured ~20% slower
 * on the 2-D training step, this one ~5%), and all of them trace to ONNX.
 */
export function sigmoid(x: Array): Array {
  return np.reciprocal(np.exp(np.minimum(x.neg(), 88)).add(1));
}

/** SiLU (swish) x * sigmoid(x) on the stable sigmoid above; the only SiLU the models use. */
export function silu(x: Array): Array {
  return x.ref.mul(sigmoid(x));
}

/**
 * Where image activations live inside a network. "hbwc" (the default): [H, B, W, C] with
 * convolutions as row-band matmuls, the fast form on jax-js Wasm. "nchw": [B, C, H, W] with the
 * engine's own convolution primitive (lax.convGeneralDilated): slow on Wasm, but a traced step keeps
 * it as one `conv` (and its gradients as convs), which onnxruntime runs as native Conv/ConvTranspose.
 * Both compute the same function of the same weights.
 */
export type ImageLayout = "hbwc" | "nchw";

// Image layers below use the [H, B, W, C] layout ("HBWC"): NHWC with height and batch swapped.
// It makes the vertical taps of a 3x3 convolution contiguous row blocks, so a conv is one
// 3-way concatenation of horizontal shifts plus three matmuls on row slices. On the Wasm backend
// that is 2-3x faster than a 9-way im2col concatenation (jax-js concatenation costs grow with the
// number of inputs) and ~10x faster than lax.convGeneralDilated. Networks transpose once on entry/exit.

/**
 * kxk convolution (k = 1 or 3), "same" padding, on [H, B, W, C]. Weight `${prefix}.weight` is the
 * im2col matrix [k*k*Cin, Cout] in (ky, kx, cin) order (HWIO flattened), bias `${prefix}.bias` [Cout].
 * stride 2 keeps the even output rows and columns (PyTorch's stride-2, padding-1 conv for even sizes).
 */
export function conv2d(
  params: Params,
  prefix: string,
  x: Array,
  opts: { kernel?: number; stride?: number; layout?: ImageLayout } = {},
): Array {
  const k = opts.kernel ?? 3;
  const stride = opts.stride ?? 1;
  if (opts.layout === "nchw") return conv2dNchw(params, prefix, x, k, stride);
  const [h, b, w, c] = x.shape;
  const weight = params[`${prefix}.weight`].ref;
  const bias = params[`${prefix}.bias`].ref;
  const cout = weight.shape[1];
  if (weight.shape[0] !== k * k * c || (k !== 1 && k !== 3) || (stride !== 1 && stride !== 2)) {
    weight.dispose();
    bias.dispose();
    x.dispose();
    throw new Error(`conv2d ${prefix}: unsupported kernel ${k}/stride ${stride} or weight rows ${weight.shape[0]} != ${k}*${k}*${c}`);
  }
  const ho = h / stride;
  const wo = w / stride;
  // Keep every second entry along `axis` (no strided slices in jax-js: reshape and index).
  const everySecond = (a: Array, axis: number): Array => {
    const shape = a.shape.slice();
    shape.splice(axis, 1, shape[axis] / 2, 2);
    const index: ([] | number)[] = shape.map(() => []);
    index[axis + 1] = 0;
    return a.reshape(shape).slice(...index);
  };
  if (k === 1) {
    let xs = x;
    if (stride === 2) xs = everySecond(everySecond(xs, 0), 2);
    return np
      .dot(xs.reshape([ho * b * wo, c]), weight)
      .add(bias)
      .reshape([ho, b, wo, cout]);
  }
  const padded = np.pad(x, [
    [1, 1],
    [0, 0],
    [1, 1],
    [0, 0],
  ]);
  let rows = np.concatenate(
    [0, 1, 2].map((dx) => padded.ref.slice([], [], [dx, dx + w], [])),
    3,
  ); // [H+2, B, W, 3C]
  padded.dispose();
  if (stride === 2) rows = everySecond(rows, 2);
  const taps = weight.reshape([3, 3 * c, cout]);
  let out: Array | null = null;
  for (let dy = 0; dy < 3; dy++) {
    let band = rows.ref.slice([dy, dy + h]);
    if (stride === 2) band = everySecond(band, 0);
    const y = np.dot(band.reshape([ho * b * wo, 3 * c]), taps.ref.slice(dy));
    out = out === null ? y : out.add(y);
  }
  rows.dispose();
  taps.dispose();
  return (out as Array).add(bias).reshape([ho, b, wo, cout]);
}

/** conv2d on [B, C, H, W] with lax.convGeneralDilated (same weights, same "same"/stride-2 semantics). */
function conv2dNchw(params: Params, prefix: string, x: Array, k: number, stride: number): Array {
  const c = x.shape[1];
  const weight = params[`${prefix}.weight`].ref;
  const bias = params[`${prefix}.bias`].ref;
  const cout = weight.shape[1];
  if (weight.shape[0] !== k * k * c) {
    weight.dispose();
    bias.dispose();
    x.dispose();
    throw new Error(`conv2d ${prefix}: weight rows ${weight.shape[0]} != ${k}*${k}*${c}`);
  }
  // im2col rows are (ky, kx, cin): HWIO -> OIHW.
  const oihw = weight.reshape([k, k, c, cout]).transpose([3, 2, 0, 1]);
  const p = (k - 1) >> 1;
  const y = lax.convGeneralDilated(
    x,
    oihw,
    [stride, stride],
    [
      [p, p],
      [p, p],
    ],
  );
  return y.add(bias.reshape([1, cout, 1, 1]));
}

/**
 * Group normalisation on [H, B, W, C] (or [B, C, H, W]) with `${prefix}.weight` / `${prefix}.bias` [C]
 * (scale, shift). Statistics over (H, W, C/groups) per sample and group, eps 1e-5 as in PyTorch.
 *
 * One pass for the statistics, var = E[x^2] - E[x]^2 (clamped at 0; flax's GroupNorm does the same
 * by default), and the normalisation and affine folded into one per-(sample, channel) scale and
 * shift: y = x a + s with a = w / sqrt(var + eps), s = b - mean a. Its forward and its gradient make
 * fewer passes over the activations than centring first: onnxruntime UNet 16,32,32 training step
 * 4% faster (CPU 5.5%; bench/profile.ts, steps alternating with the centred form, 1 thread).
 */
export function groupNorm(params: Params, prefix: string, x: Array, groups: number, eps = 1e-5, layout: ImageLayout = "hbwc"): Array {
  const nchw = layout === "nchw";
  const [b, c] = nchw ? x.shape : [x.shape[1], x.shape[3]];
  const cg = c / groups;
  // Per-group view and the axes its statistics run over.
  const g = nchw ? x.ref.reshape([b, groups, cg, x.shape[2], x.shape[3]]) : x.ref.reshape([x.shape[0], b, x.shape[2], groups, cg]);
  const axes = nchw ? [2, 3, 4] : [0, 2, 4];
  const mean = np.mean(g.ref, axes); // [B, G]
  // E[x sg(x)] has the value E[x^2] but half its gradient; m + (m - sg(m)) doubles the gradient on
  // the small [B, G] tensor, so the backward pass makes one product x k where d(x x) makes two and
  // adds them: onnxruntime UNet 16,32,32 step 2% faster (steps alternating with np.square).
  const ms = np.mean(g.ref.mul(lax.stopGradient(g)), axes);
  const meanSquare = ms.ref.add(ms.ref).sub(lax.stopGradient(ms));
  const variance = np.maximum(meanSquare.sub(np.square(mean.ref)), 0);
  const rstd = np.reciprocal(np.sqrt(variance.add(eps)));
  const scale = rstd.reshape([b, groups, 1]).mul(params[`${prefix}.weight`].ref.reshape([1, groups, cg]));
  const shift = params[`${prefix}.bias`].ref.reshape([1, groups, cg]).sub(mean.reshape([b, groups, 1]).mul(scale.ref));
  const perSample = nchw ? [b, c, 1, 1] : [1, b, 1, c];
  return x.mul(scale.reshape(perSample)).add(shift.reshape(perSample));
}

/**
 * softmax(q k^T / sqrt(d)) v over the last two axes: q [..., N, d], k [..., M, d], v [..., M, dv]
 * -> [..., N, dv]. Consumes q, k and v.
 */
export function dotProductAttention(q: Array, k: Array, v: Array): Array {
  const d = q.shape[q.ndim - 1];
  const axes = [...Array.from({ length: k.ndim - 2 }, (_, i) => i), k.ndim - 1, k.ndim - 2];
  const scores = np.matmul(q.mul(1 / Math.sqrt(d)), k.transpose(axes));
  return np.matmul(nn.softmax(scores, -1), v);
}

/**
 * Self-attention over the pixels of an image with a residual: x + proj(attention(qkv(GN(x)))).
 * `${prefix}.norm` is a GroupNorm over C, `${prefix}.qkv` a dense [C, 3C] (columns q | k | v; head h
 * takes columns h*d .. (h+1)*d - 1 of each, d = C / heads), `${prefix}.proj` a dense [C, C].
 * Each pixel is a token; the block is equivariant under any permutation of the pixels. Consumes x.
 */
export function selfAttention(
  params: Params,
  prefix: string,
  x: Array,
  heads: number,
  groups: number,
  layout: ImageLayout = "hbwc",
): Array {
  const normed = groupNorm(params, `${prefix}.norm`, x.ref, groups, undefined, layout);
  const [b, c, h, w] = layout === "nchw" ? x.shape : [x.shape[1], x.shape[3], x.shape[0], x.shape[2]];
  const n = h * w;
  const d = c / heads;
  // Tokens [B, N, C] in row-major pixel order.
  const tokens = layout === "nchw" ? normed.reshape([b, c, n]).transpose([0, 2, 1]) : normed.transpose([1, 0, 2, 3]).reshape([b, n, c]);
  const qkv = dense(params, `${prefix}.qkv`, tokens.reshape([b * n, c])).reshape([b, n, 3, heads, d]);
  const part = (i: number) => qkv.ref.slice([], [], i).transpose([0, 2, 1, 3]); // [B, heads, N, d]
  const attended = dotProductAttention(part(0), part(1), part(2));
  qkv.dispose();
  const out = dense(params, `${prefix}.proj`, attended.transpose([0, 2, 1, 3]).reshape([b * n, c]));
  const back =
    layout === "nchw"
      ? out.reshape([b, n, c]).transpose([0, 2, 1]).reshape([b, c, h, w])
      : out.reshape([b, h, w, c]).transpose([1, 0, 2, 3]);
  return x.add(back);
}

/** Nearest-neighbour 2x upsampling on [H, B, W, C] (or [B, C, H, W]). */
export function upsample2x(x: Array, layout: ImageLayout = "hbwc"): Array {
  if (layout === "nchw") {
    const [b, c, h, w] = x.shape;
    return np.broadcastTo(x.reshape([b, c, h, 1, w, 1]), [b, c, h, 2, w, 2]).reshape([b, c, 2 * h, 2 * w]);
  }
  const [h, b, w, c] = x.shape;
  return np.broadcastTo(x.reshape([h, 1, b, w, 1, c]), [h, 2, b, w, 2, c]).reshape([2 * h, b, 2 * w, c]);
}

/** Rows of `${prefix}.weight` [n, dim] for integer labels [B] (one-hot matmul: cheap and differentiable). */
export function embeddingLookup(params: Params, prefix: string, labels: Array): Array {
  const table = params[`${prefix}.weight`].ref;
  const oneHot = nn.oneHot(labels, table.shape[0]).astype(table.dtype);
  return np.dot(oneHot, table);
}

/** He-normal (fan-in) initialisation for a weight with `fanIn` inputs. */
export function heNormal(rng: Rng, n: number, fanIn: number, gain = Math.SQRT2): Float32Array {
  const out = rng.normals(n);
  const std = gain / Math.sqrt(fanIn);
  for (let i = 0; i < n; i++) out[i] *= std;
  return out;
}
