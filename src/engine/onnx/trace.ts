// Trace a jax-js function with makeJaxpr and translate it to one ONNX graph. Inputs and outputs are
// named by their path in the argument tree ("0.params.layers.0.weight") and outputs by theirs in the
// result ("out.1"), unless the caller passes names (in jax-js's flatten order).
import { makeJaxpr, type Array } from "../index.js";
import { jaxprToOnnx, type ConstValue, type JaxprLike, type OnnxGraph } from "./translate.js";
import { PROBE_BATCHES, symbolicBatch } from "./batch.js";

export interface TracedOnnx extends OnnxGraph {
  /** Equations per primitive in the translated (flattened, simplified) jaxpr. */
  primitives: Record<string, number>;
  eqns: number;
}

type Tree = Array | Tree[] | { [key: string]: Tree };

/** Leaf paths of a tree in jax-js flatten order (arrays by index, plain objects by key). */
export function leafPaths(t: unknown, prefix = ""): string[] {
  const join = (k: string) => (prefix ? `${prefix}.${k}` : k);
  if (Array.isArray(t)) return t.flatMap((c, i) => leafPaths(c, join(String(i))));
  if (typeof t === "object" && t !== null && (t as object).constructor === Object) {
    return Object.entries(t as Record<string, unknown>).flatMap(([k, c]) => leafPaths(c, join(k)));
  }
  return [prefix];
}

interface TreedefLike {
  readonly nodeType: string;
  readonly nodeMetadata: unknown;
  readonly childTreedefs: TreedefLike[];
}

/** Leaf paths of a jax-js JsTreeDef (the structure makeJaxpr reports for a function's result). */
export function treedefPaths(def: TreedefLike, prefix = ""): string[] {
  const join = (k: string) => (prefix ? `${prefix}.${k}` : k);
  if (def.nodeType === "Leaf") return [prefix];
  const keys = def.nodeType === "Object" ? (def.nodeMetadata as string[]) : def.childTreedefs.map((_, i) => String(i));
  return def.childTreedefs.flatMap((c, i) => treedefPaths(c, join(keys[i])));
}

export interface TraceOptions {
  /** Names of the input leaves (default: their paths in the argument list). */
  inputNames?: string[];
  /** Names of the output leaves (default: "out." + their paths in the result). */
  outputNames?: string[];
  graphName?: string;
  /** See TranslateOptions.convAsMatMul. */
  convAsMatMul?: boolean;
  /**
   * The first N input leaves are baked into the graph as initializers with their example values
   * (e.g. a model's weights), named by their input names; only the rest stay graph inputs.
   */
  constLeaves?: number;
  /** See TranslateOptions.optimize. */
  optimize?: boolean;
  /** See TranslateOptions.nchwcBlock. */
  nchwcBlock?: number;
}

/** Array leaves of a tree in jax-js flatten order (the order leafPaths names them). */
function leafArrays(t: unknown): Array[] {
  if (Array.isArray(t)) return t.flatMap(leafArrays);
  if (typeof t === "object" && t !== null && (t as object).constructor === Object)
    return Object.values(t as Record<string, unknown>).flatMap(leafArrays);
  return [t as Array];
}

/**
 * Trace `fn(...args)` and translate it. The example arguments only give shapes and dtypes; they are
 * borrowed (makeJaxpr does not consume them).
 */
export async function traceToOnnx(fn: (...args: never[]) => unknown, args: unknown[], opts: TraceOptions = {}): Promise<TracedOnnx> {
  const traced = makeJaxpr(fn as (...a: unknown[]) => Tree)(...args);
  const closed = traced.jaxpr;
  try {
    const jaxpr: JaxprLike = closed.jaxpr.flatten().simplify();
    const inputNames = opts.inputNames ?? leafPaths(args);
    const nConsts = closed.consts.length;
    if (inputNames.length + nConsts !== jaxpr.inBinders.length) {
      throw new Error(`traceToOnnx: ${inputNames.length} input names for ${jaxpr.inBinders.length - nConsts} input leaves`);
    }
    const outputNames = opts.outputNames ?? treedefPaths(traced.treedef, "out");
    const consts = new Map<number, ConstValue>();
    for (let i = 0; i < nConsts; i++) {
      const c = closed.consts[i] as unknown as Array;
      consts.set(i, { data: (await c.ref.data()) as ArrayBufferView, dtype: c.dtype });
    }
    const baked = leafArrays(args).slice(0, opts.constLeaves ?? 0);
    for (let i = 0; i < baked.length; i++)
      consts.set(nConsts + i, { data: (await baked[i].ref.data()) as ArrayBufferView, dtype: baked[i].dtype });
    const names = [...closed.consts.map((_, i) => `const.${i}`), ...inputNames];
    const graph = jaxprToOnnx(jaxpr, {
      inputNames: names,
      outputNames,
      consts,
      graphName: opts.graphName,
      convAsMatMul: opts.convAsMatMul,
      optimize: opts.optimize,
      nchwcBlock: opts.nchwcBlock,
    });
    const primitives: Record<string, number> = {};
    for (const e of jaxpr.eqns) primitives[e.primitive] = (primitives[e.primitive] ?? 0) + 1;
    return { ...graph, primitives, eqns: jaxpr.eqns.length };
  } finally {
    closed.dispose();
  }
}

/**
 * Trace `fn` into one graph whose batch size is symbolic ("B"): traced at the two PROBE_BATCHES
 * sizes and merged by symbolicBatch (see ./batch.ts for why and what it checks). `args(batch)`
 * gives example arguments at a batch size; they are disposed here after tracing.
 */
export async function traceToOnnxBatched(
  fn: (...args: never[]) => unknown,
  args: (batch: number) => unknown[],
  opts: TraceOptions & { batchInput: string },
): Promise<Uint8Array> {
  const graphs: Uint8Array[] = [];
  for (const b of PROBE_BATCHES) {
    const example = args(b);
    try {
      graphs.push((await traceToOnnx(fn, example, opts)).bytes);
    } finally {
      for (const a of leafArrays(example)) a.dispose();
    }
  }
  return symbolicBatch(graphs[0], graphs[1], { sizes: PROBE_BATCHES, batchInput: opts.batchInput });
}
