// The benchmark's workloads, shared by the driver (bench/run.ts), the flowmatch worker
// (bench/worker.ts) and the PyTorch replica (bench/torch_reference.py reads the same spec as JSON).
// Host-only: nothing here touches the engine, so the driver stays light.
import { Rng } from "../src/core/rng.js";
import { DEFAULT_MLP, initMlp, mlpParamShapes, type MlpConfig } from "../src/core/models/mlp.js";
import { initUnetParams, unetParamShapes, type UnetConfig } from "../src/core/models/unet.js";
import type { HostParams } from "../src/core/optim.js";
import type { HostTensor } from "../src/io/safetensors.js";

/** What runs flowmatch's side: the jax-js engine, or onnxruntime-node. */
export type Backend = "jax" | "ort";
export const BACKENDS: readonly Backend[] = ["jax", "ort"];

/** Backends that train (src/pipelines/trainers.ts): every training workload runs each. */
export const TRAIN_BACKENDS: readonly Backend[] = ["jax", "ort"];

interface Base {
  /** Short id for --only (a prefix before "-" selects a group: "mlp", "unet"). */
  id: string;
  title: string;
  batch: number;
  backends: readonly Backend[];
  /** What one timed iteration is, and how results are shown. */
  unit: "ms/step" | "img/s" | "s/run";
}
export interface MlpWorkload extends Base {
  kind: "train-mlp" | "sample-mlp";
  model: MlpConfig;
  /** Network evaluations per sampling run (sample-mlp). */
  nfe?: number;
  /**
   * A memory run (train-mlp): this many training steps per side in interleaved chunks, with RSS
   * reported at start, middle and end instead of timed blocks.
   */
  steps?: number;
}
export interface UnetWorkload extends Base {
  kind: "train-unet" | "forward-unet";
  model: UnetConfig;
}
export type Workload = MlpWorkload | UnetWorkload;

export function isMlp(w: Workload): w is MlpWorkload {
  return w.kind === "train-mlp" || w.kind === "sample-mlp";
}

/** MNIST-shaped UNet with `train-image`'s defaults (time embedding 64, 8 groups). */
const mnistUnet = (channels: number[]): UnetConfig => ({
  channels,
  numClasses: 10,
  timeEmbDim: 64,
  groups: 8,
  inChannels: 1,
  height: 28,
  width: 28,
});

export const WORKLOADS: readonly Workload[] = [
  {
    id: "mlp-default",
    title: "2-D MLP 256x3 train step, batch 256",
    kind: "train-mlp",
    model: DEFAULT_MLP,
    batch: 256,
    backends: TRAIN_BACKENDS,
    unit: "ms/step",
  },
  {
    id: "mlp-large",
    title: "2-D MLP 512x3 train step, batch 4096",
    kind: "train-mlp",
    model: { ...DEFAULT_MLP, hidden: 512 },
    batch: 4096,
    backends: TRAIN_BACKENDS,
    unit: "ms/step",
  },
  {
    id: "unet-recipe",
    title: "UNet 16,32,32 training, batch 32",
    kind: "train-unet",
    model: mnistUnet([16, 32, 32]),
    batch: 32,
    backends: TRAIN_BACKENDS,
    unit: "img/s",
  },
  {
    id: "unet-default",
    title: "UNet 32,64,64 training, batch 32",
    kind: "train-unet",
    model: mnistUnet([32, 64, 64]),
    batch: 32,
    backends: TRAIN_BACKENDS,
    unit: "img/s",
  },
  {
    id: "rss-2d",
    title: "2-D MLP 256x3 train, batch 256: RSS over a long run",
    kind: "train-mlp",
    model: DEFAULT_MLP,
    batch: 256,
    steps: 10_000,
    backends: ["ort"],
    unit: "ms/step",
  },
  {
    id: "sample-2d",
    title: "2-D sampling RK4 NFE 100, batch 4000",
    kind: "sample-mlp",
    model: DEFAULT_MLP,
    batch: 4000,
    nfe: 100,
    backends: ["jax", "ort"],
    unit: "s/run",
  },
  {
    id: "unet-forward",
    title: "UNet 32,64,64 forward, batch 64",
    kind: "forward-unet",
    model: mnistUnet([32, 64, 64]),
    batch: 64,
    backends: ["ort"],
    unit: "img/s",
  },
];

/** Workloads named by --only: exact ids or group prefixes ("mlp" = every "mlp-..."). */
export function selectWorkloads(names: string[]): Workload[] {
  if (names.length === 0) return [...WORKLOADS];
  return WORKLOADS.filter((w) => names.some((n) => w.id === n || w.id.startsWith(`${n}-`)));
}

export function paramShapes(w: Workload): Record<string, number[]> {
  return isMlp(w) ? mlpParamShapes(w.model) : unetParamShapes(w.model);
}

export function paramCount(w: Workload): number {
  return Object.values(paramShapes(w)).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
}

/** flowmatch's own initial weights for the workload (both sides load these, so they compute the same thing). */
export function initialParams(w: Workload, seed = 0): HostParams {
  const rng = new Rng(seed);
  return isMlp(w) ? initMlp(w.model, rng) : initUnetParams(w.model, rng);
}

/** HostParams as safetensors tensors (names unchanged, optional prefix). */
export function paramTensors(params: HostParams, prefix = ""): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  for (const [name, { shape, data }] of Object.entries(params)) out[prefix + name] = { dtype: "F32", shape, data };
  return out;
}

/** One sample's shape on flowmatch's side (NHWC for images). */
export function sampleShape(w: Workload): number[] {
  return isMlp(w) ? [w.model.dim] : [w.model.height, w.model.width, w.model.inChannels];
}
