// What flowmatch knows about one kind of network, in one place: its checkpoint kind, how its config
// is checked, its parameter shapes, initialisation and forward pass. Pipelines, the CLI, checkpoint
// loading and the browser ask the family (see registry.ts) instead of knowing each model.
import type { Array } from "../../engine/index.js";
import type { Rng } from "../rng.js";
import type { HostParams, Params } from "../optim.js";

/** What will run a model's forward pass: onnxruntime (a traced training step) or the jax-js engine. */
export type ModelRuntime = "onnxruntime" | "engine";

/** A velocity network v(x, t[, y]). `apply` consumes its arguments (jax-js ownership). */
export interface VelocityModel {
  /**
   * One network pass: velocities shaped like `x` for the batch `x` at times `t` ([B]) with class labels
   * ([B] int32, or null for unconditional models).
   */
  apply(params: Params, x: Array, t: Array, labels: Array | null): Array;
}

/** The training flags that set a network's parameter shapes, for checkParams's guess at what differs. */
export interface ShapeFlags {
  /** What sets the number of layers, e.g. "--depth". */
  layers: string;
  /** What sets the layer sizes, e.g. "--hidden, --time-emb-dim, or the data dimension". */
  sizes: string;
}

/** A network's engine memory estimates (core/memory.ts's measured factors), for refusing a setup before it runs. */
export interface MemoryEstimate<C> {
  /** Bytes one training step on batches of `batch` needs on the jax-js engine. */
  trainBytes(cfg: C, batch: number): number;
  /** Bytes one forward pass over `n` samples at once needs on the engine (how the solvers call the field). */
  forwardBytes(cfg: C, n: number): number;
  /** The model flags that shrink it, for the refusal's fix, e.g. "--hidden or --depth". */
  smaller: string;
}

/**
 * Everything flowmatch knows about one kind of network, found by checkpoint kind (modelFamily);
 * a new network joins with registerModelFamily, and checkpoint loading, training and the CLI then handle it.
 */
export interface ModelFamily<C = unknown> {
  /** The checkpoint "kind" its models are saved as ("2d", "image"); commands refuse other kinds. */
  readonly kind: string;
  /** The network's name for messages ("MLP", "UNet"). */
  readonly name: string;
  /** The architecture the CLI builds unless flags say otherwise (what the data decides is left out). */
  readonly defaults: Partial<C>;
  /**
   * Checks a model config (ckpt.json "model", or one built from flags) and returns it typed; throws
   * UserError naming `source` and what is wrong.
   */
  parseConfig(raw: unknown, source: string): C;
  /** Every parameter's name and shape for this config (what checkpoints of this kind must hold). */
  paramShapes(cfg: C): Record<string, number[]>;
  /** Number of trainable weights. */
  paramCount(cfg: C): number;
  /** Fresh weights from the seeded Rng (the same on every device). */
  init(cfg: C, rng: Rng): HostParams;
  /**
   * The forward pass, laid out for what runs it: "onnxruntime" (a traced training step) or "engine"
   * (jax-js, and the default). The values are the same; only the internal layout differs.
   */
  model(cfg: C, opts?: { runtime?: ModelRuntime }): VelocityModel;
  /** Shape of one sample, e.g. [2] or [28, 28, 1]. */
  sampleShape(cfg: C): number[];
  /** The label meaning "no class" for classifier-free guidance, or null for unconditional models. */
  nullLabel(cfg: C): number | null;
  /** One short line describing the network, for printing. */
  describe(cfg: C): string;
  /** Its engine memory estimates; absent: its setups are not checked before they run. */
  readonly memory?: MemoryEstimate<C>;
  /** The flags that set its parameter shapes, named when weights do not fit a config built from flags (a resume). */
  readonly shapeFlags?: ShapeFlags;
  /** What to say when stored weights do not fit the stored config; undefined: checkParams's guess from `shapeFlags`. */
  readonly mismatchHint?: string;
}

export function paramCountOf(shapes: Record<string, number[]>): number {
  return Object.values(shapes).reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Reads a checkpoint's "model" section field by field for a family's parseConfig: a missing or
 * invalid field reads as NaN (numbers) or [] (lists), so invalidFields can name every bad one at once.
 */
export function configReader(raw: unknown): {
  int(key: string, min: number): number;
  ints(key: string): number[];
  has(key: string): boolean;
} {
  const m = (typeof raw === "object" && raw !== null && !Array.isArray(raw) ? raw : {}) as Record<string, unknown>;
  return {
    int: (key, min) => {
      const v = m[key];
      return typeof v === "number" && Number.isInteger(v) && v >= min ? v : NaN;
    },
    ints: (key) => {
      const v = m[key];
      return Array.isArray(v) && v.every((c) => typeof c === "number") ? (v as number[]).slice() : [];
    },
    has: (key) => m[key] !== undefined,
  };
}

/** The fields configReader marked bad (NaN, or an empty list), in the config's order. */
export function invalidFields(cfg: object): string[] {
  return Object.entries(cfg)
    .filter(([, v]) => (Array.isArray(v) ? v.length === 0 : Number.isNaN(v)))
    .map(([k]) => k);
}
