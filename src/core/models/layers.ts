// Shared network building blocks over flat parameter records (NHWC images, [in, out] dense weights).
// Every function consumes its array arguments (jax-js ownership) and only borrows `params`
// entries (it takes `.ref` of what it reads), so callers dispose the record once at the end.
import { np, nn, type Array } from "../../engine/index.js";
import type { Rng } from "../rng.js";

export type Params = Record<string, Array>;

/**
 * Transformer-style features [sin(t w_k), cos(t w_k)] with w_k = exp(-ln(10000) k / (dim/2)).
 * t: [B] -> [B, dim]. Callers scale t first if it lives in [0, 1] (see TIME_EMBED_SCALE in mlp.ts).
 */
export function sinusoidalEmbedding(t: Array, dim: number): Array {
  const half = Math.floor(dim / 2);
  const freqs = sinusoidalFrequencies(dim);
  const args = t.reshape([-1, 1]).mul(np.array(Array.from(freqs), { dtype: t.dtype }).reshape([1, half]));
  return np.concatenate([np.sin(args.ref), np.cos(args)], 1);
}

/** The frequencies used by sinusoidalEmbedding (also needed by the ONNX exporter). */
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

export function silu(x: Array): Array {
  return nn.silu(x);
}

/**
 * 3x3 (or kxk) convolution, NHWC, "same" padding, as im2col: pad once, take k*k shifted slices,
 * concatenate them along channels and do one matmul. On the Wasm backend this is ~10x faster than
 * lax.convGeneralDilated. Weight `${prefix}.weight` is [k*k*Cin, Cout] in (ky, kx, cin) order
 * (HWIO flattened), bias `${prefix}.bias` [Cout]. stride 2 keeps every second output pixel.
 */
export function conv2d(params: Params, prefix: string, x: Array, opts: { kernel?: number; stride?: number } = {}): Array {
  const k = opts.kernel ?? 3;
  const stride = opts.stride ?? 1;
  const [b, h, w, c] = x.shape;
  const weight = params[`${prefix}.weight`].ref;
  const bias = params[`${prefix}.bias`].ref;
  const cout = weight.shape[1];
  if (weight.shape[0] !== k * k * c) {
    weight.dispose();
    bias.dispose();
    x.dispose();
    throw new Error(`conv2d ${prefix}: weight has ${weight.shape[0]} rows, expected ${k}*${k}*${c}`);
  }
  let patches: Array;
  let ho = h;
  let wo = w;
  if (k === 1) {
    patches = x;
  } else {
    const p = (k - 1) >> 1;
    const padded = np.pad(x, [
      [0, 0],
      [p, p],
      [p, p],
      [0, 0],
    ]);
    const cols: Array[] = [];
    for (let dy = 0; dy < k; dy++) for (let dx = 0; dx < k; dx++) cols.push(padded.ref.slice([], [dy, dy + h], [dx, dx + w], []));
    padded.dispose();
    patches = np.concatenate(cols, 3);
  }
  if (stride === 2) {
    // No strided slices in jax-js: keep the even rows/cols via a reshape.
    ho = h >> 1;
    wo = w >> 1;
    patches = patches.reshape([b, ho, 2, wo, 2, k * k * c]).slice([], [], 0, [], 0, []);
  } else if (stride !== 1) {
    throw new Error(`conv2d: stride ${stride} is not supported (use 1 or 2)`);
  }
  const out = np.dot(patches.reshape([b * ho * wo, k * k * c]), weight).add(bias);
  return out.reshape([b, ho, wo, cout]);
}

/**
 * Group normalisation over NHWC with `${prefix}.weight` / `${prefix}.bias` [C] (scale, shift).
 * Statistics over (H, W, C/groups) per sample and group, eps 1e-5 as in PyTorch.
 */
export function groupNorm(params: Params, prefix: string, x: Array, groups: number, eps = 1e-5): Array {
  const [b, h, w, c] = x.shape;
  const g = x.reshape([b, h * w, groups, c / groups]);
  const mean = np.mean(g.ref, [1, 3], { keepdims: true });
  const centered = g.sub(mean);
  const variance = np.mean(np.square(centered.ref), [1, 3], { keepdims: true });
  const normed = centered.mul(np.reciprocal(np.sqrt(variance.add(eps)))).reshape([b, h, w, c]);
  return normed.mul(params[`${prefix}.weight`].ref).add(params[`${prefix}.bias`].ref);
}

/** Nearest-neighbour 2x upsampling, NHWC. */
export function upsample2x(x: Array): Array {
  const [b, h, w, c] = x.shape;
  return np.broadcastTo(x.reshape([b, h, 1, w, 1, c]), [b, h, 2, w, 2, c]).reshape([b, 2 * h, 2 * w, c]);
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
