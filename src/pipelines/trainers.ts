// Training backends (Node): "jax" jit-compiles the step with jax-js (FlowTrainer, also used in
// the browser); "ort" traces the very same step function (trainStepFn) into one ONNX graph and
// runs it on onnxruntime, feeding each step's new state back as the next step's inputs.
// Both read and write the same host state, so checkpoints and resume work across backends.
import { np, type Array } from "../engine/index.js";
import { traceToOnnx, type TraceOptions, type TracedOnnx } from "../engine/onnx/trace.js";
import { createOrtSession, ort } from "../engine/onnx/session.js";
import { UserError } from "../core/errors.js";
import { FlowTrainer, stepScalars, trainStepFn, type FlowBatch, type StepOutcome, type Trainer, type TrainerOptions, type TrainState } from "../core/train.js";
import type { HostParams } from "../core/optim.js";
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
 * Refuses, before any allocation, a training step that cannot fit where it runs: the 4 GiB Wasm
 * heap on jax, this machine's memory on onnxruntime (which has no such heap limit).
 * `engineBytes` is core/memory.ts's estimate for the jax-js step.
 */
export function assertTrainingFits(backend: TrainBackend, engineBytes: number, what: string, fix: string): void {
  if (backend === "jax") return assertEngineFits(engineBytes, what, fix);
  const bytes = engineBytes * ORT_PER_ENGINE_BYTE;
  const limit = totalmem();
  if (bytes > limit) throw new UserError(`${what} needs about ${formatBytes(bytes)} of memory on onnxruntime, more than this machine's ${formatBytes(limit)}; ${fix}`);
}

export interface BackendOptions {
  /** onnxruntime intra-op threads (ort backend). */
  threads?: number;
  /** onnxruntime's memory pattern (ort backend; see OrtSessionOptions.memPattern). Default on. */
  memPattern?: boolean;
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

/** The ort backend: trainStepFn traced once per batch size and run on onnxruntime-node. */
export class OrtTrainer implements Trainer {
  stepCount: number;
  skippedSteps: number;
  lastStep: StepOutcome | null = null;
  private state = new Map<string, ort.Tensor>();
  private readonly graphs = new Map<number, Promise<StepGraph>>();
  private readonly shapes: Record<string, number[]>;

  private constructor(
    private readonly opts: TrainerOptions,
    private readonly backend: BackendOptions,
  ) {
    this.shapes = Object.fromEntries(Object.entries(opts.params).map(([k, v]) => [k, v.shape]));
    const r = opts.resume;
    const host: Record<Group, HostParams> = {
      params: opts.params,
      m: r ? r.m : zerosLike(opts.params),
      v: r ? r.v : zerosLike(opts.params),
      ema: r ? r.ema : opts.params,
    };
    for (const g of GROUPS) {
      for (const name of Object.keys(this.shapes)) {
        const h = host[g][name];
        if (!h) throw new UserError(`training state "${g}" has no tensor "${name}"; the checkpoint does not match the model`);
        // Copied: onnxruntime reads inputs in place, and the caller keeps its arrays.
        this.state.set(stateName(g, name), new ort.Tensor("float32", h.data.slice(), h.shape));
      }
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
    const traced = await traceTrainStep(this.opts, this.shapes, n);
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
    const res = await g.session.run(feeds);
    const [loss, gradNorm] = res[g.stats].data as Float32Array;
    // A non-finite loss or gradient leaves the state as it was (the outputs are dropped).
    const applied = Number.isFinite(loss) && Number.isFinite(gradNorm);
    if (applied) for (const [key, out] of g.stateOut) this.state.set(key, res[out]);
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
    const out: HostParams = {};
    for (const [name, shape] of Object.entries(this.shapes)) {
      const t = this.state.get(stateName(g, name)) as ort.Tensor;
      out[name] = { shape: shape.slice(), data: (t.data as Float32Array).slice() };
    }
    return out;
  }

  dispose(): void {
    for (const g of this.graphs.values()) void g.then((x) => x.session.release()).catch(() => {});
    this.graphs.clear();
    this.state.clear();
  }
}

/** trainStepFn traced for batch size n (inputs: state as "0.<group>.<name>", then the batch "1".."7"). */
export async function traceTrainStep(opts: TrainerOptions, shapes: Record<string, number[]>, n: number, trace: TraceOptions = {}): Promise<TracedOnnx> {
  const zeros = (shape: number[]) => np.zeros(shape);
  const state: TrainState = { params: {}, m: {}, v: {}, ema: {} };
  for (const g of GROUPS) for (const [name, shape] of Object.entries(shapes)) state[g][name] = zeros(shape);
  const full = [n, ...opts.sampleShape];
  const batch: Array[] = [zeros(full), zeros(full), zeros([n]), zeros([n, 4]), np.zeros([n], { dtype: np.int32 }), np.array(0), np.array(0)];
  try {
    return await traceToOnnx(trainStepFn(opts), [state, ...batch], { graphName: "flowmatch_train_step", ...trace });
  } finally {
    for (const g of GROUPS) for (const a of Object.values(state[g])) a.dispose();
    for (const a of batch) a.dispose();
  }
}

/** Input name of a state tensor: its path in the step's argument list (state is argument 0). */
function stateName(group: Group, name: string): string {
  return `0.${group}.${name}`;
}

function zerosLike(p: HostParams): HostParams {
  const out: HostParams = {};
  for (const [k, { shape, data }] of Object.entries(p)) out[k] = { shape, data: new Float32Array(data.length) };
  return out;
}
