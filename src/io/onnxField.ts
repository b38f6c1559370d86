// Running an exported velocity network (./onnx.ts) on onnxruntime-node: a session wrapper that
// checks the feeds, and the solvers' VelocityField on top of it. Node only (onnxruntime-node).
import { UserError } from "../core/errors.js";
import type { VelocityField } from "../core/solvers.js";
import { divergenceProbes, type DivergenceMode, type FieldWithDivergence } from "../core/likelihood.js";
import { createOrtSession, ort } from "../engine/onnx/session.js";

/** Session options of createOnnxField and createOnnxDivergenceSession. */
export interface OnnxFieldOptions {
  /** onnxruntime intra-op threads (default: FLOWMATCH_ORT_THREADS or 2, see createOrtSession). */
  threads?: number;
}

/** An exported velocity network open in onnxruntime-node (from createOnnxField). */
export interface OnnxField {
  /** Whether the graph has labels (y) and a guidance weight (w) input. */
  readonly conditional: boolean;
  readonly guided: boolean;
  /**
   * One forward pass. x is [shape] flattened, t [B]; y [B] int64 labels for class-conditional models;
   * w the guidance weight for guided exports.
   */
  run(x: Float32Array, t: Float32Array, y: BigInt64Array | undefined, shape: number[], w?: number): Promise<Float32Array>;
  /** Free the onnxruntime session (its native memory). */
  release(): Promise<void>;
}

/** Open an exported model in onnxruntime-node (CPU). */
export async function createOnnxField(modelBytes: Uint8Array, opts: OnnxFieldOptions = {}): Promise<OnnxField> {
  const session = await createOrtSession(modelBytes, { threads: opts.threads });
  const conditional = session.inputNames.includes("y");
  const guided = session.inputNames.includes("w");
  return {
    conditional,
    guided,
    async run(x, t, y, shape, w) {
      const batch = shape[0];
      if (t.length !== batch) throw new UserError(`ONNX field: t has ${t.length} entries for a batch of ${batch}`);
      const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor("float32", x, shape), t: new ort.Tensor("float32", t, [batch]) };
      if (conditional) {
        if (!y || y.length !== batch) throw new UserError(`ONNX field: this model is class-conditional and needs ${batch} int64 labels`);
        feeds.y = new ort.Tensor("int64", y, [batch]);
      }
      if (guided) {
        if (w === undefined || !Number.isFinite(w))
          throw new UserError("ONNX field: this export is guided and needs a finite guidance weight w");
        feeds.w = new ort.Tensor("float32", Float32Array.of(w), []);
      }
      const v = (await session.run(feeds)).v;
      if (!(v.data instanceof Float32Array)) throw new Error(`ONNX field: output v has type ${v.type}, expected float32`);
      return v.data;
    },
    async release() {
      await session.release();
    },
  };
}

/** What onnxVelocityField feeds the session besides x and t. */
export interface OnnxVelocityOptions {
  /** Shape of one sample, e.g. [2] or [28, 28, 1]. */
  sampleShape: number[];
  /** Class label per sample (conditional models). */
  labels?: Int32Array;
  /** Guidance weight w (guided exports). */
  guidance?: number;
}

/** The solvers' VelocityField on an open ONNX field: one session run per evaluation. */
export function onnxVelocityField(session: OnnxField, opts: OnnxVelocityOptions): VelocityField {
  const per = opts.sampleShape.reduce((a, b) => a * b, 1);
  const y = opts.labels ? BigInt64Array.from(opts.labels, (l) => BigInt(l)) : undefined;
  return (x, t) => {
    const n = x.length / per;
    return session.run(x, new Float32Array(n).fill(t), y, [n, ...opts.sampleShape], opts.guidance);
  };
}

/** Sample shape, labels and divergence mode of an OnnxDivergenceSession's field. */
export interface OnnxDivergenceOptions {
  sampleShape: number[];
  /** Class labels, one per sample (conditional models). */
  labels?: Int32Array;
  divergence: DivergenceMode;
}

/** A divergence export open in onnxruntime-node (from createOnnxDivergenceSession). */
export interface OnnxDivergenceSession {
  /**
   * The likelihood's FieldWithDivergence on this session, with the same tangents as the engine's
   * modelDivergenceField (divergenceProbes) for these options.
   */
  field(opts: OnnxDivergenceOptions): { field: FieldWithDivergence; estimates: number };
  /** Free the onnxruntime session (its native memory). */
  release(): Promise<void>;
}

/** Open a divergence export (exportDivergenceOnnx) in onnxruntime-node. */
export async function createOnnxDivergenceSession(modelBytes: Uint8Array, opts: OnnxFieldOptions = {}): Promise<OnnxDivergenceSession> {
  const session = await createOrtSession(modelBytes, { threads: opts.threads });
  const tangentCount = session.inputNames.filter((n) => n.startsWith("e.")).length;
  const conditional = session.inputNames.includes("y");
  return {
    field({ sampleShape, labels, divergence: mode }) {
      const dim = sampleShape.reduce((a, b) => a * b, 1);
      const expected = mode === "exact" ? dim : mode.hutchinson;
      if (tangentCount !== expected)
        throw new Error(`ONNX divergence field: the graph has ${tangentCount} tangent inputs, this divergence needs ${expected}`);
      let probes: Float32Array[] | null = null;
      const field: FieldWithDivergence = async (x, t) => {
        const n = x.length / dim;
        if (!probes || probes[0].length !== x.length) probes = divergenceProbes(mode, n, dim);
        const shape = [n, ...sampleShape];
        const feeds: Record<string, ort.Tensor> = {
          x: new ort.Tensor("float32", x, shape),
          t: new ort.Tensor("float32", new Float32Array(n).fill(t), [n]),
        };
        if (conditional)
          feeds.y = new ort.Tensor(
            "int64",
            BigInt64Array.from(labels ?? new Int32Array(n), (l) => BigInt(l)),
            [n],
          );
        probes.forEach((e, k) => (feeds[`e.${k}`] = new ort.Tensor("float32", e, shape)));
        const out = await session.run(feeds);
        return { v: out.v.data as Float32Array, div: out.div.data as Float32Array };
      };
      return { field, estimates: mode === "exact" ? 1 : mode.hutchinson };
    },
    release: () => session.release(),
  };
}
