// Training backends (Node): "jax" jit-compiles the step with jax-js (FlowTrainer, also used in
// the browser); "ort" traces the very same step function (trainStepFn) into one ONNX graph and
// runs it on onnxruntime, feeding each step's new state back as the next step's inputs, or, data-
// parallel, traces its two halves (lossGradFn per shard of the batch, shardedUpdateFn) and runs the
// shards on threads of their own.
// Both read and write the same host state, so checkpoints and resume work across backends.
import { np, tree, type Array } from "../engine/index.js";
import { traceToOnnx, type TraceOptions, type TracedOnnx } from "../engine/onnx/trace.js";
import { createOrtSession, nchwcBlockSize, ort, ortThreads } from "../engine/onnx/session.js";
import { OrtThread, type ThreadSession } from "../engine/onnx/thread.js";
import { UserError } from "../core/errors.js";
import {
  FlowTrainer,
  lossGradFn,
  shardedUpdateFn,
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
  /**
   * onnxruntime threads (ort backend; default DEFAULT_ORT_THREADS or FLOWMATCH_ORT_THREADS): one
   * graph on this many intra-op threads, or with dataParallel one batch shard per thread.
   */
  threads?: number;
  /**
   * Split each batch into one shard per thread, run at the same time by one-thread sessions
   * (ShardedStep); the same results as one graph up to float rounding. Default off: it wins on
   * the UNet (0.65-0.80x the time on 2 cores) and ties or loses on the MLP (1.0x at batch 4096,
   * 1.15x at 256, where its fixed costs weigh), so the image pipelines (train-image and the
   * classifier of eval-image) turn it on.
   */
  dataParallel?: boolean;
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
type State = Map<string, ort.Tensor>;

/**
 * How the steps on batches of one size run: one traced graph (SingleStep), or the batch split
 * across threads (ShardedStep). Shapes are static, so each batch size (e.g. a last partial batch)
 * gets its own.
 */
interface StepRunner {
  /** One step from `state` into `out` (preallocated, same names); resolves to [loss, gradient norm]. */
  run(state: State, out: State, batch: FlowBatch, stepSize: number, emaDecay: number): Promise<Float32Array>;
  release(): Promise<void>;
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
      // Only ever traced (traceTrainStep, traceLossGrad): the pieces are tracers, with nothing to free.
      return model.apply(Object.fromEntries(names.map((n, i) => [n, parts[i].reshape(shapes[n])])), x, t, labels);
    },
  };
}

/** A batch's five graph inputs (x0, x1, t, coef, labels) for rows [from, to), as views (no copy). */
function batchTensors(batch: FlowBatch, sampleShape: number[], from: number, to: number): ort.Tensor[] {
  const n = to - from;
  const per = sampleShape.reduce((a, b) => a * b, 1);
  const rows = (a: Float32Array, width: number) => a.subarray(from * width, to * width);
  return [
    new ort.Tensor("float32", rows(batch.x0, per), [n, ...sampleShape]),
    new ort.Tensor("float32", rows(batch.x1, per), [n, ...sampleShape]),
    new ort.Tensor("float32", rows(batch.t, 1), [n]),
    new ort.Tensor("float32", rows(batch.coef, 4), [n, 4]),
    new ort.Tensor("int32", batch.labels ? batch.labels.subarray(from, to) : new Int32Array(n), [n]),
  ];
}

/** Checks that a traced graph has the inputs and outputs its runner feeds and fetches. */
function assertNames(traced: TracedOnnx, inputs: string[], outputs: string[], what: string): void {
  const have = new Set(traced.inputs.map((i) => i.name));
  const made = new Set(traced.outputs.map((o) => o.name));
  for (const name of inputs) if (!have.has(name)) throw new Error(`ort backend: traced ${what} has no input ${name}`);
  for (const name of outputs) if (!made.has(name)) throw new Error(`ort backend: traced ${what} has no output ${name}`);
}

/** Fetches that write the new state into `out` (preallocated) and return [loss, gradient norm] as "out.1". */
function stateFetches(out: State): Record<string, ort.Tensor | null> {
  const fetches: Record<string, ort.Tensor | null> = { "out.1": null };
  for (const [key, t] of out) fetches[`out.${key}`] = t;
  return fetches;
}

/** The whole step (trainStepFn) as one graph on one session with the configured intra-op threads. */
class SingleStep implements StepRunner {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly sampleShape: number[],
  ) {}

  static async create(opts: TrainerOptions, shapes: Record<string, number[]>, n: number, b: BackendOptions): Promise<SingleStep> {
    const traced = await traceTrainStep(opts, shapes, n, { nchwcBlock: await nchwcBlock(b) });
    const stateOut = GROUPS.map((g) => `out.${stateName(g)}`);
    assertNames(traced, [...GROUPS.map(stateName), "1", "2", "3", "4", "5", "6", "7"], [...stateOut, "out.1"], "step");
    return new SingleStep(await createOrtSession(traced.bytes, { threads: b.threads, memPattern: b.memPattern }), opts.sampleShape);
  }

  async run(state: State, out: State, batch: FlowBatch, stepSize: number, emaDecay: number): Promise<Float32Array> {
    const feeds: Record<string, ort.Tensor> = Object.fromEntries(state);
    const values = [
      ...batchTensors(batch, this.sampleShape, 0, batch.t.length),
      new ort.Tensor("float32", Float32Array.of(stepSize), []),
      new ort.Tensor("float32", Float32Array.of(emaDecay), []),
    ];
    values.forEach((v, i) => (feeds[String(i + 1)] = v));
    return (await this.session.run(feeds, stateFetches(out)))["out.1"].data as Float32Array;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/**
 * Data-parallel step: the batch is cut into one shard per thread; the shards' losses and gradients
 * (lossGradFn) run at the same time on one-thread sessions, the first on this thread and the rest
 * on OrtThreads, and one more graph (shardedUpdateFn) sums them and applies Adam and EMA. On the
 * UNet two one-thread sessions beat one two-thread session because most of its step's ~2,000
 * nodes are too small to split well (window copies, transposes, small products) and each split
 * wakes a thread: 32,64,64 batch 32, 2 cores, idle: 152 vs 190 ms; 16,32,32: 50 vs 76 ms.
 */
class ShardedStep implements StepRunner {
  private constructor(
    /** Shard i is rows [rows[i], rows[i + 1]) of the batch. */
    private readonly rows: number[],
    private readonly local: ort.InferenceSession,
    private readonly remote: ThreadSession[],
    private readonly update: ort.InferenceSession,
    private readonly sampleShape: number[],
  ) {}

  static async create(
    opts: TrainerOptions,
    shapes: Record<string, number[]>,
    n: number,
    threads: OrtThread[],
    update: ort.InferenceSession,
    b: BackendOptions,
  ): Promise<ShardedStep> {
    const k = threads.length + 1;
    // Shard sizes differ by at most one, larger first.
    const sizes = Array.from({ length: k }, (_, i) => Math.floor(n / k) + (i < n % k ? 1 : 0));
    const rows = [0];
    for (const size of sizes) rows.push(rows[rows.length - 1] + size);
    const graphs = new Map<number, Uint8Array>();
    for (const size of new Set(sizes)) {
      const traced = await traceLossGrad(opts, shapes, size, { nchwcBlock: await nchwcBlock(b) });
      assertNames(traced, ["0.flat", "1", "2", "3", "4", "5"], ["out.0", "out.1.flat"], "loss and gradient");
      graphs.set(size, traced.bytes);
    }
    const one = { threads: 1, memPattern: b.memPattern };
    const local = await createOrtSession(graphs.get(sizes[0]) as Uint8Array, one);
    const remote = await Promise.all(threads.map((th, i) => th.load(graphs.get(sizes[i + 1]) as Uint8Array, one)));
    return new ShardedStep(rows, local, remote, update, opts.sampleShape);
  }

  async run(state: State, out: State, batch: FlowBatch, stepSize: number, emaDecay: number): Promise<Float32Array> {
    const params = state.get(stateName("params")) as ort.Tensor;
    const feeds = (i: number): Record<string, ort.Tensor> => {
      const f: Record<string, ort.Tensor> = { "0.flat": params };
      batchTensors(batch, this.sampleShape, this.rows[i], this.rows[i + 1]).forEach((t, j) => (f[String(j + 1)] = t));
      return f;
    };
    // The other threads' shards first (their inputs are copied as they are posted), then this thread's.
    const others = this.remote.map((s, i) => s.run(feeds(i + 1)));
    const mine = await this.local.run(feeds(0));
    const results = [mine, ...(await Promise.all(others))].map((r) => ({ loss: r["out.0"], grad: r["out.1.flat"] }));

    const n = batch.t.length;
    const k = results.length;
    const upd: Record<string, ort.Tensor> = Object.fromEntries(state);
    results.forEach((r, i) => (upd[`1.${i}.flat`] = r.grad));
    upd["2"] = new ort.Tensor(
      "float32",
      Float32Array.from(results, (r) => (r.loss.data as Float32Array)[0]),
      [k],
    );
    upd["3"] = new ort.Tensor(
      "float32",
      Float32Array.from(results, (_, i) => (this.rows[i + 1] - this.rows[i]) / n),
      [k],
    );
    upd["4"] = new ort.Tensor("float32", Float32Array.of(stepSize), []);
    upd["5"] = new ort.Tensor("float32", Float32Array.of(emaDecay), []);
    return (await this.update.run(upd, stateFetches(out)))["out.1"].data as Float32Array;
  }

  async release(): Promise<void> {
    // The update session and the threads are the trainer's (shared by every batch size).
    await Promise.all([this.local.release(), ...this.remote.map((s) => s.release())]);
  }
}

async function nchwcBlock(b: BackendOptions): Promise<number> {
  return b.nchwc === false ? 0 : nchwcBlockSize();
}

/** The ort backend: the step traced once per batch size (one graph or data-parallel shards) and run on onnxruntime-node. */
export class OrtTrainer implements Trainer {
  stepCount: number;
  skippedSteps: number;
  lastStep: StepOutcome | null = null;
  /** One flat tensor per group (params, m, v, ema), tensors in `names` order. */
  private state: State = new Map();
  /**
   * A second set of state tensors that each step writes into (preallocated outputs): when the step
   * is applied the two sets swap, so training allocates no state memory per step.
   */
  private spare: State = new Map();
  private readonly runners = new Map<number, Promise<StepRunner>>();
  /** Data-parallel steps: the other shards' threads and the update graph, made on first use. */
  private sharding: Promise<{ threads: OrtThread[]; update: ort.InferenceSession }> | null = null;
  private readonly shapes: Record<string, number[]>;
  private readonly names: string[];
  private readonly total: number;
  /** Shards per data-parallel step; 1: one graph on BackendOptions.threads intra-op threads. */
  private readonly shards: number;

  private constructor(
    private readonly opts: TrainerOptions,
    private readonly backend: BackendOptions,
  ) {
    this.shapes = Object.fromEntries(Object.entries(opts.params).map(([k, v]) => [k, v.shape]));
    this.names = Object.keys(this.shapes);
    this.total = this.names.reduce((n, k) => n + (opts.params[k].data.length as number), 0);
    this.shards = backend.dataParallel ? ortThreads(backend.threads) : 1;
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

  private runner(n: number): Promise<StepRunner> {
    let r = this.runners.get(n);
    if (!r) {
      // A batch smaller than the shard count (a tiny last batch) runs as one graph.
      r = this.shards > 1 && n >= this.shards ? this.sharded(n) : SingleStep.create(this.opts, this.shapes, n, this.backend);
      this.runners.set(n, r);
    }
    return r;
  }

  private async sharded(n: number): Promise<StepRunner> {
    this.sharding ??= (async () => {
      const traced = await traceShardedUpdate(this.opts, this.total, this.shards);
      const update = await createOrtSession(traced.bytes, { threads: this.shards, memPattern: this.backend.memPattern });
      return { threads: Array.from({ length: this.shards - 1 }, () => new OrtThread()), update };
    })();
    const { threads, update } = await this.sharding;
    return ShardedStep.create(this.opts, this.shapes, n, threads, update, this.backend);
  }

  async step(batch: FlowBatch, lr?: number): Promise<number> {
    const runner = await this.runner(batch.t.length);
    // Adam's bias correction and the EMA warm-up count applied updates only (as FlowTrainer).
    const k = this.stepCount + 1 - this.skippedSteps;
    const { stepSize, emaDecay } = stepScalars(this.opts, k, lr);
    const [loss, gradNorm] = await runner.run(this.state, this.spare, batch, stepSize, emaDecay);
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
    for (const r of this.runners.values()) void r.then((x) => x.release()).catch(() => {});
    this.runners.clear();
    const sharding = this.sharding;
    this.sharding = null;
    void sharding
      ?.then(async ({ threads, update }) => {
        await update.release();
        await Promise.all(threads.map((t) => t.terminate()));
      })
      .catch(() => {});
    this.state.clear();
    this.spare.clear();
  }
}

/** Packed zero state for tracing (one flat [total] tensor per group). */
function zeroState(total: number): TrainState {
  const state: TrainState = { params: {}, m: {}, v: {}, ema: {} };
  for (const g of GROUPS) state[g][PACKED] = np.zeros([total]);
  return state;
}

/** Example batch arrays of n samples (x0, x1, t, coef, labels), for tracing. */
function exampleBatch(opts: Pick<TrainerOptions, "sampleShape">, n: number): Array[] {
  const full = [n, ...opts.sampleShape];
  return [np.zeros(full), np.zeros(full), np.zeros([n]), np.zeros([n, 4]), np.zeros([n], { dtype: np.int32 })];
}

function packedSize(shapes: Record<string, number[]>): number {
  return Object.values(shapes).reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
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
  const state = zeroState(packedSize(shapes));
  const batch = [...exampleBatch(opts, n), np.array(0), np.array(0)];
  try {
    const step = trainStepFn({ ...opts, model: packedModel(opts.model, Object.keys(shapes), shapes) });
    return await traceToOnnx(step, [state, ...batch], { graphName: "flowmatch_train_step", ...trace });
  } finally {
    tree.dispose([state, batch]);
  }
}

/**
 * lossGradFn on packed parameters traced for a shard of n samples. Inputs "0.flat" (the packed
 * parameters) and the batch "1".."5"; outputs "out.0" (mean loss) and "out.1.flat" (its gradient).
 */
export async function traceLossGrad(
  opts: TrainerOptions,
  shapes: Record<string, number[]>,
  n: number,
  trace: TraceOptions = {},
): Promise<TracedOnnx> {
  const params = { [PACKED]: np.zeros([packedSize(shapes)]) };
  const batch = exampleBatch(opts, n);
  try {
    const fn = lossGradFn({ ...opts, model: packedModel(opts.model, Object.keys(shapes), shapes) });
    return await traceToOnnx(fn, [params, ...batch], { graphName: "flowmatch_loss_grad", ...trace });
  } finally {
    tree.dispose([params, batch]);
  }
}

/**
 * shardedUpdateFn on packed state for `shards` shards. Inputs: the state "0.<group>.flat", the
 * shards' gradients "1.<i>.flat", their losses "2" and weights "3" ([shards]), step size "4" and EMA
 * decay "5"; outputs as traceTrainStep's.
 */
export async function traceShardedUpdate(opts: TrainerOptions, total: number, shards: number): Promise<TracedOnnx> {
  const state = zeroState(total);
  const grads = Array.from({ length: shards }, () => ({ [PACKED]: np.zeros([total]) }));
  const rest = [np.zeros([shards]), np.zeros([shards]), np.array(0), np.array(0)];
  try {
    return await traceToOnnx(shardedUpdateFn(opts), [state, grads, ...rest], { graphName: "flowmatch_sharded_update" });
  } finally {
    tree.dispose([state, grads, rest]);
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
