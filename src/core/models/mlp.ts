// The 2-D velocity network: an MLP on [x, embed(t)] with SiLU activations.
// Layer i has "layers.i.weight" [in, out] and "layers.i.bias" [out]; the last layer is linear.
import { np, type Array } from "../../engine/index.js";
import { UserError } from "../errors.js";
import { silu, timeEmbedding } from "./layers.js";
import type { Rng } from "../rng.js";
import type { HostParams, Params } from "../optim.js";
import { configReader, invalidFields, paramCountOf, type ModelFamily, type VelocityModel } from "./family.js";
// memory.ts imports this module too; the family only holds references to its functions, so either may load first.
import { mlpForwardBytes, mlpTrainBytes } from "../memory.js";

/** Shape of the MLP velocity network for low-dimensional data (the 2-D toy sets): x and the embedded t in, dx/dt out. */
export interface MlpConfig {
  /** Data dimension (2 for the toy sets). */
  dim: number;
  /** Width of each hidden layer. */
  hidden: number;
  /** Number of hidden layers. */
  depth: number;
  /** Sinusoidal time-embedding size; 0 feeds raw t as one extra input. */
  timeEmbDim: number;
}

/** The network train2d builds unless --hidden, --depth or --time-emb-dim say otherwise. */
export const DEFAULT_MLP: MlpConfig = { dim: 2, hidden: 256, depth: 3, timeEmbDim: 32 };

export function mlpLayerSizes(cfg: MlpConfig): number[] {
  const input = cfg.dim + (cfg.timeEmbDim > 0 ? cfg.timeEmbDim : 1);
  return [input, ...Array.from({ length: cfg.depth }, () => cfg.hidden), cfg.dim];
}

export function mlpParamCount(cfg: MlpConfig): number {
  return paramCountOf(mlpParamShapes(cfg));
}

/**
 * Every parameter's name and shape for `cfg` ("layers.i.weight" [in, out], "layers.i.bias" [out]):
 * what initMlp fills and checkpoints hold.
 */
export function mlpParamShapes(cfg: MlpConfig): Record<string, number[]> {
  const sizes = mlpLayerSizes(cfg);
  const shapes: Record<string, number[]> = {};
  for (let i = 0; i + 1 < sizes.length; i++) {
    shapes[`layers.${i}.weight`] = [sizes[i], sizes[i + 1]];
    shapes[`layers.${i}.bias`] = [sizes[i + 1]];
  }
  return shapes;
}

/** Fresh MLP weights from the seeded Rng, as PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases. */
export function initMlp(cfg: MlpConfig, rng: Rng): HostParams {
  const out: HostParams = {};
  for (const [name, shape] of Object.entries(mlpParamShapes(cfg))) {
    const fanIn = name.endsWith(".weight") ? shape[0] : mlpParamShapes(cfg)[name.replace(".bias", ".weight")][0];
    const bound = 1 / Math.sqrt(fanIn);
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (2 * rng.uniform() - 1) * bound;
    out[name] = { shape, data };
  }
  return out;
}

/** The MLP as a VelocityModel, for FlowTrainer, modelField and logLikelihood; its weights come separately (initMlp or a checkpoint). */
export function mlpModel(cfg: MlpConfig): VelocityModel {
  const layers = mlpLayerSizes(cfg).length - 1;
  return {
    apply(params: Params, x: Array, t: Array, labels: Array | null): Array {
      labels?.dispose();
      const tFeat = cfg.timeEmbDim > 0 ? timeEmbedding(t, cfg.timeEmbDim) : t.reshape([-1, 1]);
      let h = np.concatenate([x, tFeat], 1);
      for (let i = 0; i < layers; i++) {
        h = np.dot(h, params[`layers.${i}.weight`].ref).add(params[`layers.${i}.bias`].ref);
        if (i + 1 < layers) h = silu(h);
      }
      for (const p of Object.values(params)) p.dispose();
      return h;
    },
  };
}

/** Throws UserError unless `raw` is a whole MLP config (dim, hidden, depth >= 1; timeEmbDim >= 0). */
export function parseMlpConfig(raw: unknown, source: string): MlpConfig {
  const r = configReader(raw);
  const cfg: MlpConfig = { dim: r.int("dim", 1), hidden: r.int("hidden", 1), depth: r.int("depth", 1), timeEmbDim: r.int("timeEmbDim", 0) };
  const bad = invalidFields(cfg);
  if (bad.length > 0) {
    throw new UserError(
      `${source}: checkpoint config has no valid "model" section ` +
        `(${bad.join(", ")} missing or not whole numbers); re-run training to write it again`,
    );
  }
  return cfg;
}

/** The 2-D (and any low-dimensional) velocity MLP, saved as checkpoint kind "2d". */
export const mlpFamily: ModelFamily<MlpConfig> = {
  kind: "2d",
  name: "MLP",
  defaults: DEFAULT_MLP,
  parseConfig: parseMlpConfig,
  paramShapes: mlpParamShapes,
  paramCount: mlpParamCount,
  init: initMlp,
  model: (cfg) => mlpModel(cfg),
  sampleShape: (cfg) => [cfg.dim],
  nullLabel: () => null,
  describe: (cfg) => `MLP ${cfg.depth}×${cfg.hidden}`,
  memory: { trainBytes: mlpTrainBytes, forwardBytes: mlpForwardBytes, smaller: "--hidden or --depth" },
  shapeFlags: { layers: "--depth", sizes: "--hidden, --time-emb-dim, or the data dimension" },
};
