// A batch-symbolic ONNX graph from two traces of the same function at two batch sizes.
//
// The translator works on jaxprs, whose shapes are concrete, so a traced graph is for one batch size:
// its Reshape/Expand/Slice/Split shape vectors are int64 initializers with the batch baked in. Tracing
// again at a second size and diffing the two graphs finds exactly those numbers: every entry that
// differs must be k * batch in both traces (same k), and is then computed at run time from the batch
// read off an input (Shape -> Mul -> Concat). Anything else that differs (a node, an attribute, a
// float constant) means the function depends on the batch size in another way, and this throws
// instead of guessing. The two sizes are primes unlikely to equal a model dimension; a coincidence
// changes the graph's structure (the translator shares equal constants) and is caught the same way.
import { decodeOnnxModel, encodeOnnxModel, ONNX_TYPE, type OnnxModelData, type OnnxValueInfo } from "./proto.js";

/** The two batch sizes traced (primes, far from typical channel counts and image sizes). */
export const PROBE_BATCHES: readonly [number, number] = [97, 101];

export interface SymbolicBatchOptions {
  /** Batch sizes the two graphs were traced at. */
  sizes: readonly [number, number];
  /** Graph input whose axis 0 is the batch (read with Shape at run time). */
  batchInput: string;
  /** Name of the symbolic dimension in the graph's inputs and outputs (default "B"). */
  dimName?: string;
}

function fail(what: string): Error {
  return new Error(`symbolic batch: ${what}; the traced function depends on the batch size in a way a batch-symbolic graph cannot express`);
}

const stable = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? Array.from(x) : x));

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a || !b) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function int64s(raw: Uint8Array | undefined): number[] {
  if (!raw) return [];
  const copy = Uint8Array.from(raw); // a copy: decoded bytes may be a view into a larger (Node Buffer) pool
  return Array.from(new BigInt64Array(copy.buffer, 0, copy.byteLength / 8), (v) => Number(v));
}

/** The one element a constant of these dims repeats (its bytes), or undefined if it holds several values. */
function uniformElement(raw: Uint8Array | undefined, dims: number[]): Uint8Array | undefined {
  const count = dims.reduce((a, b) => a * b, 1);
  if (!raw || count === 0 || raw.length % count !== 0) return undefined;
  const size = raw.length / count;
  for (let i = size; i < raw.length; i++) if (raw[i] !== raw[i % size]) return undefined;
  return Uint8Array.from(raw.subarray(0, size));
}

/** The batch multiple k with a = k * b1 and b = k * b2, or null if the pair is not one. */
function multiple(a: number, b: number, [b1, b2]: readonly [number, number]): number | null {
  if (a % b1 !== 0) return null;
  const k = a / b1;
  return k !== 0 && k * b2 === b ? k : null;
}

function symbolicValueInfo(a: OnnxValueInfo[], b: OnnxValueInfo[], sizes: readonly [number, number], dimName: string): OnnxValueInfo[] {
  if (a.length !== b.length) throw fail("the graphs have different inputs or outputs");
  return a.map((va, i) => {
    const vb = b[i];
    const da = va.type.tensor_type.shape.dim;
    const db = vb.type.tensor_type.shape.dim;
    if (va.name !== vb.name || da.length !== db.length) throw fail(`input/output ${va.name} differs between the traces`);
    const dim = da.map((d, j) => {
      if (d.dim_value === db[j].dim_value) return d;
      if (d.dim_value === sizes[0] && db[j].dim_value === sizes[1]) return { dim_param: dimName };
      throw fail(`${va.name} has size ${d.dim_value} vs ${db[j].dim_value} on axis ${j}`);
    });
    return { ...va, type: { tensor_type: { ...va.type.tensor_type, shape: { dim } } } };
  });
}

/** Merge two traces (ONNX bytes at sizes[0] and sizes[1]) into one graph with a symbolic batch. */
export function symbolicBatch(bytesA: Uint8Array, bytesB: Uint8Array, opts: SymbolicBatchOptions): Uint8Array {
  const { sizes, batchInput } = opts;
  const dimName = opts.dimName ?? "B";
  const A = decodeOnnxModel(bytesA);
  const B = decodeOnnxModel(bytesB);
  const na = A.graph.node;
  const nb = B.graph.node;
  if (na.length !== nb.length) throw fail(`the traces have ${na.length} and ${nb.length} nodes`);
  na.forEach((n, i) => {
    if (stable(n) !== stable(nb[i])) throw fail(`node ${i} (${n.op_type}) differs between the traces`);
  });
  const ia = A.graph.initializer ?? [];
  const ib = B.graph.initializer ?? [];
  if (ia.length !== ib.length) throw fail(`the traces have ${ia.length} and ${ib.length} constants`);

  // Run-time batch size as an int64 [1] vector, and k * batch for each multiple needed.
  const pre: OnnxModelData["graph"]["node"] = [];
  const batchName = "batch.size";
  const kept: typeof ia = [];
  const extra: typeof ia = [];
  const scaled = new Map<number, string>();
  const constVec = (values: number[]): string => {
    const name = `batch.const_${extra.length}`;
    extra.push({
      name,
      dims: [values.length],
      data_type: ONNX_TYPE.INT64,
      raw_data: new Uint8Array(BigInt64Array.from(values, (v) => BigInt(v)).buffer),
    });
    return name;
  };
  const times = (k: number): string => {
    if (k === 1) return batchName;
    let n = scaled.get(k);
    if (!n) {
      n = `batch.times_${k}`;
      pre.push({ op_type: "Mul", input: [batchName, constVec([k])], output: [n], name: `batch_mul_${k}` });
      scaled.set(k, n);
    }
    return n;
  };
  const computed: OnnxModelData["graph"]["node"] = [];
  /** An int64 vector whose entries are fixed or k * batch, computed into `name`. */
  const symbolicVector = (va: number[], vb: number[], name: string, what: string): string => {
    // Consecutive fixed entries stay one constant; each batch entry is k * batch.
    const parts: string[] = [];
    let run: number[] = [];
    va.forEach((v, j) => {
      if (v === vb[j]) {
        run.push(v);
        return;
      }
      const k = multiple(v, vb[j], sizes);
      if (k === null) throw fail(`${what} has ${v} vs ${vb[j]} at entry ${j}, not a multiple of the batch`);
      if (run.length) parts.push(constVec(run));
      run = [];
      parts.push(times(k));
    });
    if (run.length) parts.push(constVec(run));
    computed.push(
      parts.length === 1
        ? { op_type: "Identity", input: parts, output: [name], name: `batch_${name}` }
        : { op_type: "Concat", input: parts, output: [name], name: `batch_${name}`, attribute: [{ name: "axis", type: 2, i: 0 }] },
    );
    return name;
  };
  ia.forEach((t, i) => {
    const u = ib[i];
    if (t.name !== u.name || t.data_type !== u.data_type) throw fail(`constant ${t.name} differs in name or type`);
    const da = t.dims ?? [];
    const db = u.dims ?? [];
    if (stable(da) === stable(db) && sameBytes(t.raw_data, u.raw_data)) {
      kept.push(t);
      return;
    }
    if (stable(da) === stable(db) && t.data_type === ONNX_TYPE.INT64 && da.length === 1) {
      symbolicVector(int64s(t.raw_data), int64s(u.raw_data), t.name, `constant ${t.name}`);
      return;
    }
    // A batch-sized constant filled with one value (e.g. the zero tangents a jvp instantiates for
    // closed-over values): Expand of that value to the run-time shape.
    const fill = uniformElement(t.raw_data, da) ?? null;
    if (da.length === db.length && fill && sameBytes(fill, uniformElement(u.raw_data, db))) {
      const value = `${t.name}.value`;
      extra.push({ name: value, dims: [], data_type: t.data_type, raw_data: fill });
      const shape = symbolicVector(da, db, `${t.name}.shape`, `the shape of constant ${t.name}`);
      computed.push({ op_type: "Expand", input: [value, shape], output: [t.name], name: `batch_expand_${t.name}` });
      return;
    }
    throw fail(`constant ${t.name} (type ${t.data_type}) changes with the batch size`);
  });
  if (!(A.graph.input ?? []).some((v) => v.name === batchInput))
    throw fail(`there is no input "${batchInput}" to read the batch size from`);
  // Shape(start=0, end=1): the batch axis as a 1-element int64 vector (opset 15+).
  const shapeNode = {
    op_type: "Shape",
    input: [batchInput],
    output: [batchName],
    name: "batch_shape",
    attribute: [
      { name: "start", type: 2, i: 0 },
      { name: "end", type: 2, i: 1 },
    ],
  };
  const graph = {
    ...A.graph,
    node: [...(computed.length ? [shapeNode, ...pre, ...computed] : []), ...na],
    initializer: [...kept, ...extra],
    input: symbolicValueInfo(A.graph.input ?? [], B.graph.input ?? [], sizes, dimName),
    output: symbolicValueInfo(A.graph.output ?? [], B.graph.output ?? [], sizes, dimName),
  };
  return encodeOnnxModel({ ...A, graph });
}
