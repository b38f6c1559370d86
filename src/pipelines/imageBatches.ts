// Training batches for image models: epoch-wise shuffles derived from (seed, epoch) and per-step
// randomness from stepRng, so a resumed run sees exactly the batches the original would.
import { Rng, stepRng } from "../core/rng.js";
import { otCoupleByClass } from "../core/coupling.js";
import type { TimeSampler } from "../core/timeSamplers.js";
import type { ImageDataset } from "../data/images.js";

export interface ImageBatchOptions {
  batchSize: number;
  seed: number;
  /** Probability of replacing a label by the null class (classifier-free guidance). */
  labelDropout: number;
  sampleTimes: TimeSampler;
  /** Reflow: noise coupled to each image (x0 of image i is noise[i]) instead of fresh noise. */
  coupledNoise?: Float32Array;
  /** Mirror each image left-right with probability 1/2 (drawn after the noise, so runs without it are unchanged). */
  horizontalFlip?: boolean;
  /** "ot": noise paired with the images by exact OT within each label (train-image --coupling ot). */
  coupling?: "independent" | "ot";
}

/** Batch k (0-based) of images x1, their (dropped-out) labels, times t and noise x0. Buffers are reused between calls. */
export function imageBatches(
  data: ImageDataset,
  o: ImageBatchOptions,
): (k: number) => { x0: Float32Array; x1: Float32Array; t: Float32Array; labels: Int32Array } {
  const n = o.batchSize;
  const per = data.height * data.width * data.channels;
  const x1 = new Float32Array(n * per);
  const labels = new Int32Array(n);
  const index = new Uint32Array(n);
  return (k) => {
    for (let i = 0; i < n; i++) {
      const flat = k * n + i;
      const idx = epochPermutation(o.seed, Math.floor(flat / data.n), data.n)[flat % data.n];
      index[i] = idx;
      x1.set(data.images.subarray(idx * per, (idx + 1) * per), i * per);
      labels[i] = data.labels[idx];
    }
    const rng = stepRng(o.seed, k);
    for (let i = 0; i < n; i++) if (rng.uniform() < o.labelDropout) labels[i] = data.numClasses;
    const t = o.sampleTimes(n, rng);
    const noise = o.coupledNoise;
    let x0: Float32Array;
    if (noise) {
      // Same indices as x1: each image keeps the noise it was generated from.
      x0 = new Float32Array(n * per);
      for (let i = 0; i < n; i++) x0.set(noise.subarray(index[i] * per, (index[i] + 1) * per), i * per);
    } else {
      x0 = rng.normals(n * per);
      // Within each label the model sees (dropped-out rows share the null label: unconditional OT
      // among them), so the noise given a label stays N(0, I).
      if (o.coupling === "ot") x0 = otCoupleByClass(x0, x1, per, labels).x0;
    }
    if (o.horizontalFlip) {
      const { width: w, channels: c } = data;
      for (let i = 0; i < n; i++) {
        if (rng.uniform() >= 0.5) continue;
        for (let y = 0; y < data.height; y++) {
          const row = i * per + y * w * c;
          for (let x = 0; x < w >> 1; x++) {
            for (let ch = 0; ch < c; ch++) {
              const a = row + x * c + ch,
                b = row + (w - 1 - x) * c + ch;
              const tmp = x1[a];
              x1[a] = x1[b];
              x1[b] = tmp;
            }
          }
        }
      }
    }
    return { x0, x1, t, labels };
  };
}

const permCache = new Map<string, Uint32Array>();
function epochPermutation(seed: number, epoch: number, n: number): Uint32Array {
  const key = `${seed}:${epoch}:${n}`;
  let p = permCache.get(key);
  if (!p) {
    if (permCache.size > 4) permCache.clear();
    p = new Rng((seed * 7919 + epoch * 104729 + 1) >>> 0).permutation(n);
    permCache.set(key, p);
  }
  return p;
}
