// Training backends (Node): "jax" jit-compiles the step with jax-js (FlowTrainer, also used in
// the browser); "ort" traces the very same step function (trainStepFn) into one ONNX graph and
// runs it on onnxruntime, feeding each step's new state back as the next step's inputs.
// Both read and write the same host state, so checkpoints and resume work across backends.
import { np, type Array } from "../engine/index.js";
import { traceToOnnx, type TraceOptions, type TracedOnnx } from "../engine/onnx/trace.js";
import { createOrtSession, nchwcBlockSize, ort } from "../engine/onnx/session.js";
import { UserError } from "../core/errors.js";
import {
  FlowTrainer,
  stepScalars,
  trainStepFn,
  type FlowBatch,
  type StepOutcome,
  type Trainer,
  type TrainerOptions,
  type TrainState,
} from "../core/train.js";
import type { ModelFamily, VelocityModel } from "../core/models/family.js";
import type { HostParams, Params } from "../core/optim.js";
import { assertEngineFits, formatBytes } from "../core/memory.js";
import { totalmem } from "node:os";

export const TRAIN_BACKENDS = ["ort", "jax"] as const;
export type TrainBackend = (typeof TRAIN_BACKENDS)[number];
/** onnxruntime in Node: the same step at 2-3x the speed of jax-js on Wasm (ENGINE.md). */
export const DEFAULT_TRAIN_BACKEND: TrainBackend = "ort";

/**
 * Peak memory of a training step on onnxruntime relative to core/memory.ts's jax-js estimate
 * (measured: UNet 32,64,64 on 28x28 at batch 32, 965 MiB vs 2.6 GiB, and at batch 128, 3.3 GiB vs
 * 10 GiB). Rounded down, so the check refuses only what cannot fit.
 */
const ORT_PER_ENGINE_BYTE = 0.3;

/**
 * Refuses, before any allocation, a training step on batches of `batch` that cannot fit where it
 * runs: the 4 GiB Wasm heap on jax, this machine's memory on onnxruntime (which has no such heap
 * limit). The estimate is the family's (ModelFamily.memory); families without one pass.
 */
export function assertTrainingFits<C>(backend: TrainBackend, family: ModelFamily<C>, cfg: C, batch: number): void {
  if (!family.memory) return;
  const engineBytes = family.memory.trainBytes(cfg, batch);
  const what = `training ${family.describe(cfg)} (${family.paramCount(cfg).toLocaleString("en-US")} parameters) on batches of ${batch}`;
  const fix = `use a smaller --batch-size or ${family.memory.smaller}`;
  if (backend === "jax") {
    assertEngineFits(engineBytes, what, fix);
    return;
  }
  const bytes = engineBytes * ORT_PER_ENGINE_BYTE;
  const limit = totalmem();
  if (bytes > limit)
    throw new UserError(
      `${what} needs about ${formatBytes(bytes)} of memory on onnxruntime, more than this machine's ${formatBytes(limit)}; ${fix}`,
    );
}

export interface BackendOptions {
  /** onnxruntime intra-op threads (ort backend). */
  threads?: number;
  /** onnxruntime's memory pattern (ort backend; see OrtSessionOptions.memPattern). Default on. */
  memPattern?: boolean;
  /**
   * Convolutions in onnxruntime's blocked NCHWc layout where this machine has it (ort backend;
   * TranslateOptions.nchwcBlock). Default on: 12-30% less CPU time per 3x3 conv than plain Conv
   * (batch 32, 16-128 channels, 7-28 px, AVX-512), 0.87x on the UNet training step.
   */
  nchwc?: boolean;
}

export async function createTrainer(backend: TrainBackend, opts: TrainerOptions, b: BackendOptions = {}): Promise<Trainer> {
  if (backend === "jax") return new FlowTrainer(opts);
  return OrtTrainer.create(opts, b);
}

const GROUPS = ["params", "m", "v", "ema"] as const;
type Group = (typeof GROUPS)[number];

/** One traced graph (shapes are static: one per batch size, e.g. a last partial batch). */
interface StepGraph {
  session: ort.InferenceSession;
  /** Graph input names of x0, x1, t, coef, labels, stepSize, emaDecay. */
  batchInputs: string[];
  /** Output name of [loss, gradient norm]. */
  stats: string;
  /** Output name for each state input name. */
  stateOut: Map<string, string>;
}

/** The name of the one flat tensor per state group in the packed step. */
const PACKED = "flat";

/**
 * The model on packed parameters: one flat float32 vector (the tensors in `names` order) that
 * apply splits into the model's tensors. Traced, the whole state is 4 inputs and 4 outputs instead
 * of 4 per tensor, and Adam/EMA run as a dozen ops on one vector instead of a dozen per tensor
 * (the UNet has ~70 tensors); its gradient arrives flat (the split's transpose is one concatenate).
 */
function packedModel(model: VelocityModel, names: string[], shapes: Record<string, number[]>): VelocityModel {
  const sizes = names.map((n) => shapes[n].reduce((a, b) => a * b, 1));
  const cuts = sizes.slice(0, -1).map((_, i) => sizes.slice(0, i + 1).reduce((a, b) => a + b, 0));
  return {
    apply(params: Params, x: Array, t: Array, labels: Array | null): Array {
      const parts = cuts.length ? np.split(params[PACKED].ref, cuts, 0) : [params[PACKED].ref];
      // Only ever traced (traceTrainStep): the pieces are tracers, with nothing to free.
      return model.apply(Object.fromEntries(names.map((n, i) => [n, parts[i].reshape(shapes[n])])), x, t, labels);
    },
  };
}

/** The ort backend: trainStepFn on packed state, traced once per batch size and run on onnxruntime-node. */
export class OrtTrainer implements Trainer {
  stepCount: number;
  skippedSteps: number;
  lastStep: StepOutcome | null = null;
  /** One flat tensor per group (params, m, v, ema), tensors in `names` order. */
  private state = new Map<string, ort.Tensor>();
  /**
   * A second set of state tensors that each step writes into (preallocated outputs): when the step
   * is applied the two sets swap, so training allocates no state memory per step.
   */
  private spare = new Map<string, ort.Tensor>();
  private readonly graphs = new Map<number, Promise<StepGraph>>();
  private readonly shapes: Record<string, number[]>;
  private readonly names: string[];
  private readonly total: number;

  private constructor(
    private readonly opts: TrainerOptions,
    private readonly backend: BackendOptions,
  ) {
    this.shapes = Object.fromEntries(Object.entries(opts.params).map(([k, v]) => [k, v.shape]));
    this.names = Object.keys(this.shapes);
    this.total = this.names.reduce((n, k) => n + (opts.params[k].data.length as number), 0);
    const r = opts.resume;
    const host: Record<Group, HostParams> = {
      params: opts.params,
      m: r ? r.m : zerosLike(opts.params),
      v: r ? r.v : zerosLike(opts.params),
      ema: r ? r.ema : opts.params,
    };
    for (const g of GROUPS) {
      // Packed into a new buffer: onnxruntime reads inputs in place, and the caller keeps its arrays.
      const flat = new Float32Array(this.total);
      let off = 0;
      for (const name of this.names) {
        const h = host[g][name];
        if (!h) throw new UserError(`training state "${g}" has no tensor "${name}"; the checkpoint does not match the model`);
        flat.set(h.data, off);
        off += h.data.length;
      }
      this.state.set(stateName(g), new ort.Tensor("float32", flat, [this.total]));
      this.spare.set(stateName(g), new ort.Tensor("float32", new Float32Array(this.total), [this.total]));
    }
    this.stepCount = r ? r.step : 0;
    this.skippedSteps = r?.skipped ?? 0;
  }

  static async create(opts: TrainerOptions, backend: BackendOptions = {}): Promise<OrtTrainer> {
    return new OrtTrainer(opts, backend);
  }

  private graph(n: number): Promise<StepGraph> {
    let g = this.graphs.get(n);
    if (!g) {
      g = this.build(n);
      this.graphs.set(n, g);
    }
    return g;
  }

  private async build(n: number): Promise<StepGraph> {
    const nchwcBlock = this.backend.nchwc === false ? 0 : await nchwcBlockSize();
    const traced = await traceTrainStep(this.opts, this.shapes, n, { nchwcBlock });
    const inputNames = new Set(traced.inputs.map((i) => i.name));
    const outputNames = new Set(traced.outputs.map((o) => o.name));
    const stateOut = new Map<string, string>();
    for (const key of this.state.keys()) {
      const out = `out.${key}`;
      if (!inputNames.has(key) || !outputNames.has(out)) throw new Error(`ort backend: traced step has no input/output pair for ${key}`);
      stateOut.set(key, out);
    }
    const batchInputs = ["1", "2", "3", "4", "5", "6", "7"];
    for (const b of batchInputs) if (!inputNames.has(b)) throw new Error(`ort backend: traced step has no input ${b}`);
    if (!outputNames.has("out.1")) throw new Error("ort backend: traced step has no [loss, gradient norm] output");
    const session = await createOrtSession(traced.bytes, { threads: this.backend.threads, memPattern: this.backend.memPattern });
    return { session, batchInputs, stats: "out.1", stateOut };
  }

  async step(batch: FlowBatch, lr?: number): Promise<number> {
    const n = batch.t.length;
    const g = await this.graph(n);
    const full = [n, ...this.opts.sampleShape];
    // Adam's bias correction and the EMA warm-up count applied updates only (as FlowTrainer).
    const k = this.stepCount + 1 - this.skippedSteps;
    const { stepSize, emaDecay } = stepScalars(this.opts, k, lr);
    const feeds: Record<string, ort.Tensor> = Object.fromEntries(this.state);
    const values = [
      new ort.Tensor("float32", batch.x0, full),
      new ort.Tensor("float32", batch.x1, full),
      new ort.Tensor("float32", batch.t, [n]),
      new ort.Tensor("float32", batch.coef, [n, 4]),
      new ort.Tensor("int32", batch.labels ?? new Int32Array(n), [n]),
      new ort.Tensor("float32", Float32Array.of(stepSize), []),
      new ort.Tensor("float32", Float32Array.of(emaDecay), []),
    ];
    g.batchInputs.forEach((name, i) => (feeds[name] = values[i]));
    const fetches: Record<string, ort.Tensor | null> = { [g.stats]: null };
    for (const [key, out] of g.stateOut) fetches[out] = this.spare.get(key) as ort.Tensor;
    const res = await g.session.run(feeds, fetches);
    const [loss, gradNorm] = res[g.stats].data as Float32Array;
    // A non-finite loss or gradient leaves the state as it was (the outputs are dropped).
    const applied = Number.isFinite(loss) && Number.isFinite(gradNorm);
    if (applied) [this.state, this.spare] = [this.spare, this.state];
    else this.skippedSteps += 1;
    this.stepCount += 1;
    this.lastStep = { loss, gradNorm, applied };
    return loss;
  }

  async hostParams(which: "params" | "ema" = "params"): Promise<HostParams> {
    return this.group(which);
  }

  async hostState(): Promise<{ params: HostParams; ema: HostParams; m: HostParams; v: HostParams }> {
    return { params: this.group("params"), ema: this.group("ema"), m: this.group("m"), v: this.group("v") };
  }

  private group(g: Group): HostParams {
    const flat = (this.state.get(stateName(g)) as ort.Tensor).data as Float32Array;
    const out: HostParams = {};
    let off = 0;
    for (const name of this.names) {
      const shape = this.shapes[name];
      const size = shape.reduce((a, b) => a * b, 1);
      out[name] = { shape: shape.slice(), data: flat.slice(off, off + size) };
      off += size;
    }
    return out;
  }

  dispose(): void {
    for (const g of this.graphs.values()) void g.then((x) => x.session.release()).catch(() => {});
    this.graphs.clear();
    this.state.clear();
    this.spare.clear();
  }
}

/**
 * trainStepFn on packed state (packedModel; tensors in `shapes` key order) traced for batch size n.
 * Inputs: the state as "0.<group>.flat" ([total]), then the batch "1".."7"; outputs "out.0.<group>.flat"
 * and "out.1" = [loss, gradient norm].
 */
export async function traceTrainStep(
  opts: TrainerOptions,
  shapes: Record<string, number[]>,
  n: number,
  trace: TraceOptions = {},
): Promise<TracedOnnx> {
  const names = Object.keys(shapes);
  const total = names.reduce((a, k) => a + shapes[k].reduce((x, y) => x * y, 1), 0);
  const state: TrainState = { params: {}, m: {}, v: {}, ema: {} };
  for (const g of GROUPS) state[g][PACKED] = np.zeros([total]);
  const full = [n, ...opts.sampleShape];
  const batch: Array[] = [
    np.zeros(full),
    np.zeros(full),
    np.zeros([n]),
    np.zeros([n, 4]),
    np.zeros([n], { dtype: np.int32 }),
    np.array(0),
    np.array(0),
  ];
  try {
    const step = trainStepFn({ ...opts, model: packedModel(opts.model, names, shapes) });
    return await traceToOnnx(step, [state, ...batch], { graphName: "flowmatch_train_step", ...trace });
  } finally {
    for (const g of GROUPS) for (const a of Object.values(state[g])) a.dispose();
    for (const a of batch) a.dispose();
  }
}

/** Input name of a state group's flat tensor: its path in the step's argument list (state is argument 0). */
function stateName(group: Group): string {
  return `0.${group}.${PACKED}`;
}

function zerosLike(p: HostParams): HostParams {
  const out: HostParams = {};
  for (const [k, { shape, data }] of Object.entries(p)) out[k] = { shape, data: new Float32Array(data.length) };
  return out;
}
