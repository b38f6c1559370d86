// jax-js Jaxpr -> ONNX graph (opset 18), so a traced function (e.g. the whole jitted training step)
// runs on onnxruntime. Jaxprs and primitive params are jax-js internals: this file is written against
// the exact pinned version (JAX_JS_VERSION) and throws naming the primitive for anything it does
// not know, instead of guessing.
//
// Values are kept "compact": same rank as the jaxpr variable, with size 1 on axes that are only
// broadcast. jax-js materialises broadcasts (`broadcast` eqns; the cotangent of a dense layer is
// broadcast to [B, N, K] before `dot` = sum(x * y, -1)); ONNX's NumPy broadcasting does that for
// free, and `dot` then sees which axes are real in which operand and becomes one MatMul
// (batch = real in both, M = real only on the left, N = real only on the right). A value is
// expanded to its full shape only where an op needs it (reshape that moves real axes, concat, pad).
import { GraphBuilder, ONNX_TYPE, type AttrValue, type NodeSpec } from "./proto.js";

/** The @jax-js/jax version this translator was written and tested against (package.json pins it). */
export const JAX_JS_VERSION = "0.1.25";
export const ONNX_OPSET = 18;

// Structural views of jax-js's Var / Lit / JaxprEqn / Jaxpr (not exported by jax-js as types we can
// construct; these are exactly the fields read here).
export interface AtomLike {
  readonly aval: { readonly shape: number[]; readonly dtype: string };
  /** Present on literals only. */
  readonly value?: number;
}
export interface EqnLike {
  readonly primitive: string;
  readonly inputs: AtomLike[];
  /** Primitive params (untyped in jax-js); each case below reads and casts its own. */
  readonly params: Readonly<Record<string, unknown>>;
  readonly outBinders: AtomLike[];
}
export interface JaxprLike {
  readonly inBinders: AtomLike[];
  readonly eqns: EqnLike[];
  readonly outs: AtomLike[];
}

/** A constant bound to an input binder (ClosedJaxpr consts): becomes an initializer. */
export interface ConstValue {
  data: ArrayBufferView;
  dtype: string;
}

export interface TranslateOptions {
  inputNames: string[];
  outputNames: string[];
  /** inBinder index -> constant data (those binders become initializers, not graph inputs). */
  consts?: Map<number, ConstValue>;
  graphName?: string;
  /**
   * Convolutions with a tiny output and a big kernel (weight gradients) as one MatMul split by
   * output position, over windows of x or, when the kernel has fewer rows, of the kernel (default true).
   */
  convAsMatMul?: boolean;
  /**
   * Graph optimisations of the emitted graph (default true): nearest upsampling as Resize (its
   * gradient, a block sum, as AveragePool), Reshape chains folded, the stable sigmoid chain (and
   * its gradient) as Sigmoid, repeated nodes computed once, dead nodes dropped. Off gives the plain translation (tests compare them).
   */
  optimize?: boolean;
  /**
   * onnxruntime's NCHWc block size on this machine (session.ts nchwcBlockSize: 16 with AVX-512, 8
   * with AVX2, 0 where it has none): 2-D convs whose channel counts it divides run in that blocked
   * layout. Default 0 (plain Conv): such a graph runs only where it was built, so exports leave it off.
   */
  nchwcBlock?: number;
}

/** onnxruntime's operator domain of its blocked-layout kernels (ReorderInput, Conv, ReorderOutput). */
export const NCHWC_DOMAIN = "com.microsoft.nchwc";

export interface TranslateStats {
  nodes: number;
  matmuls: number;
  convs: number;
  /** Convolutions with lhs dilation (input gradients of strided convs). */
  convTransposes: number;
  expands: number;
  /** Dots that contract over a broadcast axis (Mul + ReduceSum instead of MatMul). */
  fallbackDots: number;
  /** Convs in onnxruntime's blocked layout (TranslateOptions.nchwcBlock). */
  nchwcConvs: number;
}

export interface OnnxGraph {
  bytes: Uint8Array;
  inputs: { name: string; shape: number[]; dtype: string }[];
  outputs: { name: string; shape: number[]; dtype: string }[];
  stats: TranslateStats;
}

const ELEM: Record<string, number> = {
  float32: ONNX_TYPE.FLOAT,
  float64: ONNX_TYPE.DOUBLE,
  float16: ONNX_TYPE.FLOAT16,
  int32: ONNX_TYPE.INT32,
  uint32: ONNX_TYPE.UINT32,
  bool: ONNX_TYPE.BOOL,
};

function elemType(dtype: string): number {
  const t = ELEM[dtype];
  if (t === undefined) throw new Error(`jaxpr->ONNX: dtype ${dtype} has no ONNX mapping (jax-js ${JAX_JS_VERSION})`);
  return t;
}

function unsupported(what: string): Error {
  return new Error(
    `jaxpr->ONNX: ${what} is not supported by the translator (written for @jax-js/jax ${JAX_JS_VERSION}); ` +
      `run this function with the jax backend (--backend jax) or add it to src/engine/onnx/translate.ts`,
  );
}

const isLit = (a: AtomLike): boolean => a.value !== undefined && !("id" in a);
const eqShape = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
const prod = (s: number[]) => s.reduce((x, y) => x * y, 1);
const bcastShape = (...shapes: number[][]): number[] => {
  const r = Math.max(...shapes.map((s) => s.length));
  return Array.from({ length: r }, (_, i) => Math.max(...shapes.map((s) => s[s.length - r + i] ?? 1)));
};
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

const UNARY: Record<string, string> = {
  neg: "Neg",
  reciprocal: "Reciprocal",
  sqrt: "Sqrt",
  exp: "Exp",
  log: "Log",
  sin: "Sin",
  cos: "Cos",
  asin: "Asin",
  atan: "Atan",
  floor: "Floor",
  ceil: "Ceil",
  erf: "Erf",
  stop_gradient: "Identity",
};
const BINARY: Record<string, string> = { add: "Add", mul: "Mul", min: "Min", max: "Max", idiv: "Div" };
const REDUCE: Record<string, string> = { Add: "ReduceSum", Max: "ReduceMax", Min: "ReduceMin", Mul: "ReduceProd" };

/** ONNX value name and its compact shape. */
interface Val {
  name: string;
  c: number[];
}

/** Translate a flattened jaxpr (`closed.jaxpr.flatten().simplify()`) into an ONNX model. */
export function jaxprToOnnx(jaxpr: JaxprLike, opts: TranslateOptions): OnnxGraph {
  const { inputNames, outputNames } = opts;
  const consts = opts.consts ?? new Map<number, ConstValue>();
  if (inputNames.length !== jaxpr.inBinders.length)
    throw new Error(`jaxpr->ONNX: ${inputNames.length} input names for ${jaxpr.inBinders.length} inputs`);
  if (outputNames.length !== jaxpr.outs.length)
    throw new Error(`jaxpr->ONNX: ${outputNames.length} output names for ${jaxpr.outs.length} outputs`);
  const g = new GraphBuilder();
  const stats: TranslateStats = { nodes: 0, matmuls: 0, convs: 0, convTransposes: 0, expands: 0, fallbackDots: 0, nchwcConvs: 0 };
  const op1 = (o: string, inputs: string[], attrs?: Record<string, AttrValue>) => g.op(o, inputs, attrs);

  // Constants (shape vectors, literals) are shared initializers.
  const constCache = new Map<string, string>();
  const i64 = (values: number[]): string => {
    const key = `i64:${values.join(",")}`;
    let n = constCache.get(key);
    if (!n) {
      n = g.int64Const(g.fresh("c_i64"), values);
      constCache.set(key, n);
    }
    return n;
  };
  const scalar = (value: number, dtype: string, rank: number): string => {
    const key = `s:${dtype}:${value}:${rank}`;
    let n = constCache.get(key);
    if (!n) {
      let raw: Uint8Array;
      if (dtype === "float32") raw = new Uint8Array(Float32Array.of(value).buffer);
      else if (dtype === "float64") raw = new Uint8Array(Float64Array.of(value).buffer);
      else if (dtype === "int32") raw = new Uint8Array(Int32Array.of(value).buffer);
      else if (dtype === "uint32") raw = new Uint8Array(Uint32Array.of(value).buffer);
      else if (dtype === "bool") raw = Uint8Array.of(value ? 1 : 0);
      else throw unsupported(`a literal of dtype ${dtype}`);
      n = g.rawConst(g.fresh("c_lit"), raw, new Array<number>(rank).fill(1), elemType(dtype));
      constCache.set(key, n);
    }
    return n;
  };

  const env = new Map<AtomLike, Val>();
  const full = new Map<AtomLike, string>();
  const optimize = opts.optimize !== false;
  const sigmoids = optimize ? findSigmoids(jaxpr.eqns) : null;
  /**
   * `where(mask, 0, e * (-(s * s) * X))` with e, s and mask of one sigmoid chain: the gradient that
   * flows back through the chain (jax-js's transpose of reciprocal, exp, min and neg), X the cotangent of s.
   */
  const sigmoidGradient = (e: EqnLike): { group: SigmoidChain; cotangent: AtomLike } | null => {
    if (!sigmoids || e.primitive !== "where" || !isLit(e.inputs[1]) || e.inputs[1].value !== 0 || isLit(e.inputs[2])) return null;
    const group = sigmoids.byMask.get(e.inputs[0]);
    if (!group) return null;
    const q = sigmoids.producer.get(e.inputs[2]);
    const p = q && mulOperand(q, group.exp);
    const pe = p && sigmoids.producer.get(p);
    if (pe?.primitive !== "mul" || pe.inputs.some(isLit)) return null;
    for (const [k, x] of [pe.inputs, [pe.inputs[1], pe.inputs[0]]]) {
      const ke = sigmoids.producer.get(k);
      const je = ke?.primitive === "neg" ? sigmoids.producer.get(ke.inputs[0]) : undefined;
      if (je?.primitive === "mul" && je.inputs[0] === group.out && je.inputs[1] === group.out) return { group, cotangent: x };
    }
    return null;
  };
  /**
   * `add(m * s, neg(G))` with G the sigmoid chain's gradient (sigmoidGradient) for cotangent x * m:
   * the whole gradient of silu(x) = x s for the cotangent m of its output.
   */
  const siluGradient = (e: EqnLike): { group: SigmoidChain; cotangent: AtomLike } | null => {
    if (!sigmoids || e.primitive !== "add" || e.inputs.some(isLit)) return null;
    for (const [n, ng] of [e.inputs, [e.inputs[1], e.inputs[0]]]) {
      const nge = sigmoids.producer.get(ng);
      const we = nge?.primitive === "neg" ? sigmoids.producer.get(nge.inputs[0]) : undefined;
      const dsg = we && sigmoidGradient(we);
      const ne = sigmoids.producer.get(n);
      if (!dsg || !ne) continue;
      const m = mulOperand(ne, dsg.group.out);
      const xe = sigmoids.producer.get(dsg.cotangent);
      if (m && xe && mulOperand(xe, dsg.group.x) === m && eqShape(e.outBinders[0].aval.shape, dsg.group.x.aval.shape))
        return { group: dsg.group, cotangent: m };
    }
    return null;
  };
  // 2-D dots [M, N] = an @ bn; a transpose of one becomes bn^T @ an^T, which ORT folds into one
  // FusedMatMul/Gemm (a Reshape between a Transpose and a MatMul blocks that fusion).
  const dot2d = new Map<AtomLike, { an: string; bn: string }>();

  // Readers of each jaxpr value (eqn inputs and graph outputs): a product with one reader can be fused away.
  const readers = new Map<AtomLike, number>();
  if (optimize) {
    for (const e of jaxpr.eqns) for (const a of e.inputs) readers.set(a, (readers.get(a) ?? 0) + 1);
    for (const a of jaxpr.outs) readers.set(a, (readers.get(a) ?? 0) + 1);
  }
  /**
   * `x * a + b` with x a full float32 tensor and a, b constant along its trailing axes (GroupNorm's
   * per-(sample, channel) scale and shift) as one BatchNormalization (inference form: mean 0,
   * variance 1, epsilon 0, so it is exactly x a + b) on x viewed as [1, P, Q]: one pass instead of
   * Mul and Add. The Mul, left without a reader, is dropped.
   */
  function scaleShift(e: EqnLike): boolean {
    if (!sigmoids || e.outBinders[0].aval.dtype !== "float32" || e.inputs.some(isLit)) return false;
    const shape = e.outBinders[0].aval.shape;
    for (const [m, b] of [e.inputs, [e.inputs[1], e.inputs[0]]]) {
      const me = sigmoids.producer.get(m);
      if (me?.primitive !== "mul" || readers.get(m) !== 1 || me.inputs.some(isLit)) continue;
      for (const [x, a] of [me.inputs, [me.inputs[1], me.inputs[0]]]) {
        const xv = read(x);
        const av = read(a);
        const bv = read(b);
        if (!eqShape(xv.c, shape) || av.c.length !== shape.length || bv.c.length !== shape.length) continue;
        // Trailing axes [lead, rank) along which a and b are constant.
        let lead = shape.length;
        while (lead > 0 && av.c[lead - 1] === 1 && bv.c[lead - 1] === 1) lead--;
        const P = prod(shape.slice(0, lead));
        const Q = prod(shape.slice(lead));
        if (lead === 0 || Q < 16 || P > 65536) continue;
        const leadShape = [...shape.slice(0, lead), ...shape.slice(lead).map(() => 1)];
        const flat = (v: Val) => reshape(eqShape(v.c, leadShape) ? v.name : op1("Expand", [v.name, i64(leadShape)]), leadShape, [P]);
        const key = `bn:${P}`;
        let stats0 = constCache.get(key);
        if (!stats0) {
          stats0 = g.floatConst(g.fresh("c_bn_mean"), new Float32Array(P), [P]);
          constCache.set(key, stats0);
          constCache.set(`${key}:var`, g.floatConst(g.fresh("c_bn_var"), new Float32Array(P).fill(1), [P]));
        }
        const y = op1(
          "BatchNormalization",
          [reshape(xv.name, shape, [1, P, Q]), flat(av), flat(bv), stats0, constCache.get(`${key}:var`) as string],
          {
            epsilon: { float: 0 },
          },
        );
        env.set(e.outBinders[0], { name: reshape(y, [1, P, Q], shape), c: shape.slice() });
        return true;
      }
    }
    return false;
  }

  /** An operand as `dtype`: jax-js leaves weakly typed literals (and only those) un-promoted, e.g. int32 == 2.0. */
  const readAs = (a: AtomLike, dtype: string): Val => {
    if (isLit(a)) return { name: scalar(a.value as number, dtype, a.aval.shape.length), c: a.aval.shape.map(() => 1) };
    const v = read(a);
    return a.aval.dtype === dtype ? v : { name: op1("Cast", [v.name], { to: elemType(dtype) }), c: v.c };
  };
  /** The dtype operands of an n-ary op share: that of the first non-literal operand. */
  const operandDtype = (atoms: AtomLike[], fallback: string): string => atoms.find((x) => !isLit(x))?.aval.dtype ?? fallback;
  const read = (a: AtomLike): Val => {
    if (isLit(a)) return { name: scalar(a.value as number, a.aval.dtype, a.aval.shape.length), c: a.aval.shape.map(() => 1) };
    const v = env.get(a);
    if (!v) throw new Error("jaxpr->ONNX: variable used before it is defined (is the jaxpr flattened?)");
    return v;
  };
  /** The value at its full jaxpr shape (Expand where it is compact). */
  const readFull = (a: AtomLike): string => {
    const v = read(a);
    if (eqShape(v.c, a.aval.shape)) return v.name;
    let n = full.get(a);
    if (!n) {
      stats.expands++;
      n = op1("Expand", [v.name, i64(a.aval.shape)]);
      full.set(a, n);
    }
    return n;
  };
  // Reshape outputs -> their source and its shape: a reshape of a reshape reads the source (and
  // returns it when the shapes match), so chains fold and Transpose/MatMul pairs stay adjacent
  // for onnxruntime's fusions.
  const reshapeSrc = new Map<string, { src: string; shape: number[] }>();
  const reshape = (name: string, from: number[], to: number[]): string => {
    if (eqShape(from, to)) return name;
    const prev = optimize ? reshapeSrc.get(name) : undefined;
    if (prev) {
      if (eqShape(prev.shape, to)) return prev.src;
      name = prev.src;
      from = prev.shape;
    }
    const o = op1("Reshape", [name, i64(to)]);
    reshapeSrc.set(o, { src: name, shape: from.slice() });
    return o;
  };
  const transpose = (name: string, perm: number[]) => (perm.every((p, i) => p === i) ? name : op1("Transpose", [name], { perm }));
  const slice = (name: string, axes: number[], starts: number[], ends: number[]) =>
    axes.length ? op1("Slice", [name, i64(starts), i64(ends), i64(axes)]) : name;

  jaxpr.inBinders.forEach((v, i) => {
    const c = consts.get(i);
    if (c) g.rawConst(inputNames[i], new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength), v.aval.shape, elemType(c.dtype));
    env.set(v, { name: inputNames[i], c: v.aval.shape.slice() });
  });

  for (const e of jaxpr.eqns) {
    const out = e.outBinders;
    const outShape = out[0]?.aval.shape ?? [];
    const set = (i: number, name: string, c: number[]) => env.set(out[i], { name, c });
    const p = e.primitive;
    const sg = sigmoids?.byOut.get(out[0]);
    if (sg) {
      // onnxruntime's Sigmoid saturates (exactly 0 below -18, 1 above 18, NaN stays NaN), so it
      // is as finite as the capped chain it replaces, in one op instead of five.
      const a = read(sg.x);
      set(0, op1("Sigmoid", [a.name]), a.c);
      continue;
    }
    const ds = sigmoids ? siluGradient(e) : null;
    if (ds) {
      // m (s + y (1 - s)) with y = x s (the forward's silu, deduplicated): 4 passes instead of the 6
      // of m s + (x m) s (s - 1).
      const m = read(ds.cotangent);
      const x = read(ds.group.x);
      const sv = read(ds.group.out);
      const y = op1("Mul", [x.name, sv.name]);
      const t = op1("Add", [sv.name, op1("Mul", [y, op1("Sub", [scalar(1, "float32", sv.c.length), sv.name])])]);
      set(0, op1("Mul", [m.name, t]), bcastShape(m.c, sv.c));
      continue;
    }
    const dsg = sigmoids ? sigmoidGradient(e) : null;
    if (dsg) {
      // X * s (s - 1) = -(X * s^2 e^-x): the chain's gradient from s alone (see findSigmoids).
      const x = read(dsg.cotangent);
      const s = read(dsg.group.out);
      dsg.group.slope ??= op1("Mul", [s.name, op1("Sub", [s.name, scalar(1, "float32", s.c.length)])]);
      set(0, op1("Mul", [x.name, dsg.group.slope]), bcastShape(x.c, s.c));
      continue;
    }
    if (p in UNARY) {
      const a = read(e.inputs[0]);
      set(0, op1(UNARY[p], [a.name]), a.c);
    } else if (p === "add" && scaleShift(e)) {
      // handled (x a + b as one BatchNormalization)
    } else if (p in BINARY || p === "mod") {
      const dtIn = operandDtype(e.inputs, out[0].aval.dtype);
      const [a, b] = e.inputs.map((x) => readAs(x, dtIn));
      const dt = out[0].aval.dtype;
      let o: string;
      if (dt === "bool" && p === "add") o = op1("Or", [a.name, b.name]);
      else if (dt === "bool" && p === "mul") o = op1("And", [a.name, b.name]);
      else if (dt === "bool" && (p === "max" || p === "min")) o = op1(p === "max" ? "Or" : "And", [a.name, b.name]);
      // jax-js mod takes the sign of the dividend (C-style): ONNX Mod with fmod = 1.
      else if (p === "mod") o = op1("Mod", [a.name, b.name], { fmod: 1 });
      else if (p === "idiv" && dt.startsWith("float")) throw unsupported("idiv on floats");
      else o = op1(BINARY[p], [a.name, b.name]);
      set(0, o, bcastShape(a.c, b.c));
    } else if (p === "compare") {
      const dtIn = operandDtype(e.inputs, "float32");
      const [a, b] = e.inputs.map((x) => readAs(x, dtIn));
      const opName = e.params.op as string;
      const m: Record<string, string> = { less: "Less", equal: "Equal", less_equal: "LessOrEqual", not_equal: "Equal" };
      if (!(opName in m)) throw unsupported(`compare op "${opName}"`);
      let o = op1(m[opName], [a.name, b.name]);
      if (opName === "not_equal") o = op1("Not", [o]);
      set(0, o, bcastShape(a.c, b.c));
    } else if (p === "where") {
      const c = readAs(e.inputs[0], "bool");
      const [a, b] = e.inputs.slice(1).map((x) => readAs(x, out[0].aval.dtype));
      set(0, op1("Where", [c.name, a.name, b.name]), bcastShape(c.c, a.c, b.c));
    } else if (p === "cast") {
      const a = read(e.inputs[0]);
      const to = e.params.dtype as string;
      set(0, e.inputs[0].aval.dtype === to ? a.name : op1("Cast", [a.name], { to: elemType(to) }), a.c);
    } else if (p === "transpose") {
      const perm = e.params.perm as number[];
      const src = dot2d.get(e.inputs[0]);
      if (src && perm.length === 2 && perm[0] === 1) {
        stats.matmuls++;
        set(0, op1("MatMul", [transpose(src.bn, [1, 0]), transpose(src.an, [1, 0])]), outShape.slice());
        continue;
      }
      const a = read(e.inputs[0]);
      const c = perm.map((q) => a.c[q]);
      // A transpose that only moves size-1 axes is a reshape (keeps MatMul/Transpose fusions possible).
      const realOrder = perm.filter((q) => a.c[q] > 1);
      if (realOrder.every((q, i) => i === 0 || q > realOrder[i - 1])) set(0, reshape(a.name, a.c, c), c);
      else if (optimize && realOrder.length < perm.length) {
        // Transpose the real axes only: the reshapes around it fold into their neighbours, so a
        // weight gradient's transpose lands right before its MatMul (one FusedMatMul in onnxruntime).
        const realIn = a.c.map((_, i) => i).filter((i) => a.c[i] > 1);
        const t = transpose(
          reshape(
            a.name,
            a.c,
            realIn.map((i) => a.c[i]),
          ),
          realOrder.map((q) => realIn.indexOf(q)),
        );
        set(
          0,
          reshape(
            t,
            realOrder.map((q) => a.c[q]),
            c,
          ),
          c,
        );
      } else set(0, transpose(a.name, perm), c);
    } else if (p === "broadcast") {
      // params.shape = output shape, params.axis = new axes; size-1 input axes may also grow.
      const a = read(e.inputs[0]);
      const axis = e.params.axis as number[];
      const shape = e.params.shape as number[];
      const c: number[] = [];
      let k = 0;
      for (let i = 0; i < shape.length; i++) c.push(axis.includes(i) ? 1 : a.c[k++]);
      set(0, axis.length ? reshape(a.name, a.c, c) : a.name, c);
    } else if (p === "reshape") {
      const shape = e.params.shape as number[];
      const a = read(e.inputs[0]);
      const inShape = e.inputs[0].aval.shape;
      const nz = (s: number[]) => s.filter((d) => d !== 1);
      const sameReal = eqShape(nz(inShape), nz(shape));
      if (dot2d.has(e.inputs[0]) && shape.length === 2 && sameReal && shape.every((d) => d > 1)) {
        set(0, reshape(a.name, a.c, shape), shape.slice());
        dot2d.set(out[0], dot2d.get(e.inputs[0]) as { an: string; bn: string });
      } else if (sameReal && !eqShape(a.c, inShape)) {
        // Only size-1 axes come or go: stay compact.
        const real = inShape
          .map((d, i) => [d, a.c[i]])
          .filter(([d]) => d !== 1)
          .map(([, c]) => c);
        let k = 0;
        const c = shape.map((d) => (d === 1 ? 1 : real[k++]));
        set(0, reshape(a.name, a.c, c), c);
      } else if (optimize && e.inputs[0].aval.dtype === "float32" && nearestUpsample(a, inShape, shape)) {
        set(0, nearestUpsample(a, inShape, shape) as string, shape.slice());
      } else {
        const part = optimize ? compactReshape(a.c, inShape, shape) : null;
        if (part) {
          const src = eqShape(part.expand, a.c) ? a.name : op1("Expand", [a.name, i64(part.expand)]);
          set(0, reshape(src, part.expand, part.out), part.out);
        } else set(0, reshape(readFull(e.inputs[0]), inShape, shape), shape.slice());
      }
    } else if (p === "reduce") {
      lowerReduce(e);
    } else if (p === "dot") {
      lowerDot(e);
    } else if (p === "conv") {
      lowerConv(e);
    } else if (p === "concatenate") {
      set(0, op1("Concat", e.inputs.map(readFull), { axis: e.params.axis as number }), outShape.slice());
    } else if (p === "split") {
      const outs = g.opN("Split", [readFull(e.inputs[0]), i64(e.params.sizes as number[])], out.length, { axis: e.params.axis as number });
      outs.forEach((n, i) => set(i, n, out[i].aval.shape.slice()));
    } else if (p === "shrink") {
      const a = read(e.inputs[0]);
      const fullIn = e.inputs[0].aval.shape;
      const sl = e.params.slice as [number, number][];
      const axes: number[] = [];
      const starts: number[] = [];
      const ends: number[] = [];
      const c = a.c.slice();
      sl.forEach(([s, en], i) => {
        if (a.c[i] === 1 && fullIn[i] !== 1) return; // a broadcast axis stays size 1
        if (s === 0 && en === a.c[i]) return;
        axes.push(i);
        starts.push(s);
        ends.push(en);
        c[i] = en - s;
      });
      set(0, slice(a.name, axes, starts, ends), c);
    } else if (p === "pad") {
      const w = e.params.width as [number, number][];
      let o = readFull(e.inputs[0]);
      const pos = [...w.map(([l]) => Math.max(0, l)), ...w.map(([, r]) => Math.max(0, r))];
      if (pos.some((x) => x > 0)) o = op1("Pad", [o, i64(pos)], { mode: "constant" });
      // Negative widths crop.
      const padded = e.inputs[0].aval.shape.map((d, i) => d + pos[i] + pos[i + w.length]);
      const axes = w.map((_, i) => i).filter((i) => w[i][0] < 0 || w[i][1] < 0);
      o = slice(
        o,
        axes,
        axes.map((i) => Math.max(0, -w[i][0])),
        axes.map((i) => padded[i] - Math.max(0, -w[i][1])),
      );
      set(0, o, outShape.slice());
    } else if (p === "gather") {
      lowerGather(e);
    } else if (p === "flip") {
      const axes = e.params.axis as number[];
      const a = read(e.inputs[0]);
      // Flipping a broadcast (compact size-1) axis changes nothing.
      const real = axes.filter((ax) => a.c[ax] > 1);
      const big = 2 ** 31;
      const o = real.length
        ? op1("Slice", [a.name, i64(real.map(() => -1)), i64(real.map(() => -big)), i64(real), i64(real.map(() => -1))])
        : a.name;
      set(0, o, a.c.slice());
    } else if (p === "jit") {
      throw new Error("jaxpr->ONNX: nested jit found; call jaxpr.flatten() before translating");
    } else {
      throw unsupported(`primitive "${p}"`);
    }
  }

  /**
   * A reshape that merges each broadcast axis into the real axis before it ([.., h, 1->k, ..] ->
   * [.., h*k, ..]) is a nearest-neighbour upsample: one Resize, which onnxruntime runs ~10x faster
   * than materialising the broadcast with Expand (UNet upsampling, measured).
   */
  function nearestUpsample(a: Val, inShape: number[], shape: number[]): string | null {
    if (inShape.length !== a.c.length) return null;
    const merged: number[] = [];
    const scales: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < inShape.length; i++) {
      const bcast = a.c[i] === 1 && inShape[i] > 1;
      if (!bcast && a.c[i] !== inShape[i]) return null;
      if (bcast) {
        // Needs a preceding real (non-broadcast) axis to merge into.
        if (i === 0 || scales.length === 0 || scales[scales.length - 1] !== 1) return null;
        merged[merged.length - 1] *= inShape[i];
        scales[scales.length - 1] = inShape[i];
      } else {
        merged.push(inShape[i]);
        scales.push(1);
        base.push(inShape[i]);
      }
    }
    if (!scales.some((k) => k > 1) || !eqShape(merged, shape)) return null;
    const x = reshape(a.name, a.c, base);
    const sc = g.floatConst(g.fresh("c_scales"), Float32Array.from(scales), [scales.length]);
    return op1("Resize", [x, "", sc], { mode: "nearest", nearest_mode: "floor", coordinate_transformation_mode: "asymmetric" });
  }

  /**
   * A sum over axes 3 and 5 of [N, C, H, kh, W, kw] (nearest upsampling's gradient) as one
   * AveragePool (kernel = stride = [kh, kw]) times kh * kw on [N, C, H * kh, W * kw]: a strided
   * ReduceSum over two inner axes is several times slower. Only for power-of-two windows, where the
   * divide and multiply are exact.
   */
  function sumPool2d(name: string, c: number[], axes: number[]): string | null {
    const ax = [...axes].sort((p, q) => p - q);
    if (c.length !== 6 || ax.length !== 2 || ax[0] !== 3 || ax[1] !== 5) return null;
    const [n, ch, h, kh, w, kw] = c;
    const k = kh * kw;
    if (k < 2 || (k & (k - 1)) !== 0) return null;
    const x = reshape(name, c, [n, ch, h * kh, w * kw]);
    const avg = op1("AveragePool", [x], { kernel_shape: [kh, kw], strides: [kh, kw] });
    return op1("Mul", [avg, scalar(k, "float32", 0)]);
  }

  function lowerReduce(e: EqnLike) {
    const a = read(e.inputs[0]);
    const fullShape = e.inputs[0].aval.shape;
    const axes = e.params.axis as number[];
    const opName = e.params.op as string;
    const dt = e.outBinders[0].aval.dtype;
    if (!(opName in REDUCE)) throw unsupported(`reduce op "${opName}"`);
    // Summing over a broadcast (compact size-1) axis multiplies by its size.
    let factor = 1;
    for (const ax of axes) if (a.c[ax] === 1 && fullShape[ax] !== 1) factor *= fullShape[ax];
    const realAxes = axes.filter((ax) => a.c[ax] !== 1);
    const c = a.c.filter((_, i) => !axes.includes(i));
    let o = a.name;
    const pool = optimize && opName === "Add" && dt === "float32" ? sumPool2d(a.name, a.c, realAxes) : null;
    if (pool) o = pool;
    else if (realAxes.length) {
      // ONNX reductions take no bool: any/all run on int32.
      const isBool = dt === "bool";
      if (isBool) o = op1("Cast", [o], { to: ONNX_TYPE.INT32 });
      if ((opName === "Max" || opName === "Min") && realAxes.length === 1 && !isBool) {
        // Opset 18 made Reduce{Max,Min}'s axes an input, which onnx < 1.13's checker (Debian's
        // python3-onnx) rejects; ArgMax + GatherElements is the same value in a form every checker takes.
        const idx = op1(opName === "Max" ? "ArgMax" : "ArgMin", [o], { axis: realAxes[0], keepdims: 1 });
        o = op1("Squeeze", [op1("GatherElements", [o, idx], { axis: realAxes[0] }), i64(realAxes)]);
      } else o = op1(REDUCE[opName], [o, i64(realAxes)], { keepdims: 0 });
      if (isBool) o = op1("Cast", [o], { to: ONNX_TYPE.BOOL });
    }
    const afterReal = a.c.filter((_, i) => !realAxes.includes(i));
    o = reshape(o, afterReal, c);
    if (factor !== 1) {
      if (opName === "Add") o = op1("Mul", [o, scalar(factor, dt, 0)]);
      else if (opName === "Mul") o = op1("Pow", [o, scalar(factor, dt, 0)]);
    }
    env.set(e.outBinders[0], { name: o, c });
  }

  function lowerDot(e: EqnLike) {
    const [A, B] = e.inputs;
    const a = read(A);
    const b = read(B);
    const outShape = e.outBinders[0].aval.shape;
    const R = Math.max(a.c.length, b.c.length);
    const ca = [...new Array<number>(R - a.c.length).fill(1), ...a.c];
    const cb = [...new Array<number>(R - b.c.length).fill(1), ...b.c];
    const K = R - 1;
    const fullK = Math.max(A.aval.shape[A.aval.shape.length - 1], B.aval.shape[B.aval.shape.length - 1]);
    if (ca[K] !== fullK || cb[K] !== fullK) {
      stats.fallbackDots++;
      const m = op1("Mul", [readFull(A), readFull(B)]);
      env.set(e.outBinders[0], { name: op1("ReduceSum", [m, i64([-1])], { keepdims: 0 }), c: outShape.slice() });
      return;
    }
    const batch: number[] = [];
    const M: number[] = [];
    const N: number[] = [];
    const free: number[] = [];
    for (let i = 0; i < K; i++) {
      if (ca[i] > 1 && cb[i] > 1) batch.push(i);
      else if (ca[i] > 1) M.push(i);
      else if (cb[i] > 1) N.push(i);
      else free.push(i);
    }
    const sz = (s: number[], ax: number[]) => prod(ax.map((i) => s[i]));
    const Bt = sz(ca, batch);
    const Mt = sz(ca, M);
    const Nt = sz(cb, N);
    // Squeeze each operand to its real axes, then one transpose into [batch, M, K] / [batch, K, N].
    const prep = (name: string, c: number[], cr: number[], target: number[], shape2: number[]) => {
      const real = cr.map((_, i) => i).filter((i) => cr[i] > 1);
      let n = reshape(
        name,
        c,
        real.map((i) => cr[i]),
      );
      const tgt = target.filter((i) => cr[i] > 1);
      n = transpose(
        n,
        tgt.map((i) => real.indexOf(i)),
      );
      return reshape(
        n,
        tgt.map((i) => cr[i]),
        shape2,
      );
    };
    const lhs3 = batch.length ? [Bt, Mt, fullK] : [Mt, fullK];
    const rhs3 = batch.length ? [Bt, fullK, Nt] : [fullK, Nt];
    const res3 = batch.length ? [Bt, Mt, Nt] : [Mt, Nt];
    const an = prep(a.name, a.c, ca, [...batch, ...M, K], lhs3);
    const bn = prep(b.name, b.c, cb, [...batch, K, ...N], rhs3);
    stats.matmuls++;
    let o = op1("MatMul", [an, bn]);
    const order = [...batch, ...M, ...N];
    const mid = order.map((i) => Math.max(ca[i], cb[i]));
    o = reshape(o, res3, mid);
    const sorted = order.slice().sort((x, y) => x - y);
    o = transpose(
      o,
      sorted.map((i) => order.indexOf(i)),
    );
    const c = range(K).map((i) => (free.includes(i) ? 1 : Math.max(ca[i], cb[i])));
    o = reshape(
      o,
      sorted.map((i) => c[i]),
      c,
    );
    // Output rank is max(rank a, rank b) - 1; drop leading compact axes the padding added.
    const outC = c.slice(K - outShape.length);
    o = reshape(o, c, outC);
    env.set(e.outBinders[0], { name: o, c: outC });
    if (!batch.length && M.length === 1 && N.length === 1 && !free.length && K === 2 && M[0] === 0 && outShape.length === 2)
      dot2d.set(e.outBinders[0], { an, bn });
  }

  // conv: lhs [N, Cin, ...spatial], rhs [Cout, Cin, ...kernel] (lax.conv_general_dilated order).
  // lhs dilation (the input gradient of a strided conv) is a ConvTranspose with the kernel flipped
  // and its channel axes swapped back.
  function lowerConv(e: EqnLike) {
    const { vmapDims, strides, padding, lhsDilation, rhsDilation } = e.params as {
      vmapDims: number;
      strides: number[];
      padding: [number, number][];
      lhsDilation: number[];
      rhsDilation: number[];
    };
    if (vmapDims !== 0) throw unsupported(`conv with vmapDims ${vmapDims} (grouped or vmapped convolution)`);
    const [L, Rh] = e.inputs;
    if (L.aval.dtype !== "float32" && L.aval.dtype !== "float64") throw unsupported(`conv on ${L.aval.dtype}`);
    const outShape = e.outBinders[0].aval.shape;
    const nsp = strides.length;
    const kernel = Rh.aval.shape.slice(2);
    const lhsDil = lhsDilation.some((d) => d !== 1);
    stats.convs++;
    let x = readFull(L);
    const w = readFull(Rh);
    if (!lhsDil) {
      // Negative padding crops the input first.
      const crop = range(nsp).filter((i) => padding[i][0] < 0 || padding[i][1] < 0);
      x = slice(
        x,
        crop.map((i) => i + 2),
        crop.map((i) => Math.max(0, -padding[i][0])),
        crop.map((i) => L.aval.shape[i + 2] - Math.max(0, -padding[i][1])),
      );
      const pads = [...padding.map(([l]) => Math.max(0, l)), ...padding.map(([, r]) => Math.max(0, r))];
      const outSpatial = outShape.slice(2);
      if (opts.convAsMatMul !== false && prod(outSpatial) <= 32 && prod(kernel) > 4 * prod(outSpatial)) {
        // A weight gradient (kernel = activations, output = the small kernel): MLAS would run it as
        // one skinny GEMM per "batch" item (M = Cout, N = outH * outW); gathering the few output
        // windows and doing one [positions * batch, C * k] x [C * k, Cout] MatMul is far better shaped.
        const [B, C] = L.aval.shape;
        const O = Rh.aval.shape[0];
        // Spatial size of x after the crop above.
        const xs = range(nsp).map((i) => L.aval.shape[i + 2] - Math.max(0, -padding[i][0]) - Math.max(0, -padding[i][1]));
        if (strides.every((v) => v === 1) && rhsDilation.every((v) => v === 1) && O * prod(xs) < B * prod(kernel)) {
          // The kernel has fewer rows (O) than the activations (B), e.g. the gradient of a conv to
          // fewer channels: copy windows of the kernel, zero-padded, instead of windows of x.
          // out[b, o, i] = sum_{c, y} x[b, c, y] w[o, c, y + pads_lo - i] (w zero outside its extent).
          const lo = range(nsp).map((i) => Math.max(0, outSpatial[i] - 1 - pads[i]));
          const hi = range(nsp).map((i) => Math.max(0, pads[i] + xs[i] - kernel[i]));
          const wp = [...lo, ...hi].some((v) => v > 0) ? op1("Pad", [w, i64([0, 0, ...lo, 0, 0, ...hi])], { mode: "constant" }) : w;
          const cx = C * prod(xs);
          const xt = op1("Transpose", [op1("Reshape", [x, i64([B, cx])])], { perm: [1, 0] });
          const positions = outSpatial.reduce<number[][]>((acc, n) => acc.flatMap((pre) => range(n).map((i) => [...pre, i])), [[]]);
          stats.matmuls++; // one logical MatMul, split by window
          const parts = positions.map((pos) => {
            const starts = pos.map((p, i) => pads[i] + lo[i] - p);
            const win = op1("Slice", [wp, i64(starts), i64(starts.map((s0, i) => s0 + xs[i])), i64(range(nsp).map((i) => i + 2))]);
            return op1("Reshape", [op1("MatMul", [op1("Reshape", [win, i64([O, cx])]), xt]), i64([1, O, B])]);
          });
          const res = parts.length > 1 ? op1("Concat", parts, { axis: 0 }) : parts[0]; // [P, O, B]
          const o = op1("Reshape", [op1("Transpose", [res], { perm: [2, 1, 0] }), i64(outShape)]);
          env.set(e.outBinders[0], { name: o, c: outShape.slice() });
          return;
        }
        // Channels (here the original batch) innermost, in x and in the kernel alike: each window is
        // then runs of W * C contiguous floats instead of W, and the transposes that put them there
        // move one axis (onnxruntime's fast path) and compose with the transposes jax-js's gradient
        // put before this conv. UNet weight gradients 1-19% faster on 1 thread, 12-35% on 2.
        const last = optimize;
        const toLast = [0, ...range(nsp).map((i) => i + 2), 1];
        if (last) x = op1("Transpose", [x], { perm: toLast });
        const sp = range(nsp).map((i) => (last ? i + 1 : i + 2)); // spatial axes of x
        if (pads.some((v) => v > 0)) {
          const padsAt = (side: number[]) => {
            const q = new Array<number>(nsp + 2).fill(0);
            sp.forEach((ax, i) => (q[ax] = side[i]));
            return q;
          };
          x = op1("Pad", [x, i64([...padsAt(pads.slice(0, nsp)), ...padsAt(pads.slice(nsp))])], { mode: "constant" });
        }
        const ck = C * prod(kernel);
        const windows: string[] = [];
        const positions = outSpatial.reduce<number[][]>((acc, n) => acc.flatMap((pre) => range(n).map((i) => [...pre, i])), [[]]);
        for (const pos of positions) {
          const starts = pos.map((p, i) => p * strides[i]);
          const ends = starts.map((s0, i) => s0 + (kernel[i] - 1) * rhsDilation[i] + 1);
          const whole = starts.every(
            (s0, i) => s0 === 0 && ends[i] === L.aval.shape[i + 2] + pads[i] + pads[i + nsp] && rhsDilation[i] === 1,
          );
          const win = whole ? x : op1("Slice", [x, i64(starts), i64(ends), i64(sp), i64(rhsDilation)]);
          windows.push(op1("Reshape", [win, i64([B, ck])]));
        }
        // One MatMul per window and a Concat of the small [B, O] results: concatenating the windows
        // themselves instead copies every activation window once more (measured ~30% slower).
        const wk = last ? op1("Transpose", [w], { perm: toLast }) : w;
        const wt = op1("Transpose", [op1("Reshape", [wk, i64([O, ck])])], { perm: [1, 0] });
        stats.matmuls++; // one logical MatMul, split by window
        const parts = windows.map((win) => op1("Reshape", [op1("MatMul", [win, wt]), i64([1, B, O])]));
        const res = parts.length > 1 ? op1("Concat", parts, { axis: 0 }) : parts[0]; // [P, B, O]
        const o = op1("Reshape", [op1("Transpose", [res], { perm: [1, 2, 0] }), i64(outShape)]);
        env.set(e.outBinders[0], { name: o, c: outShape.slice() });
        return;
      }
      const attrs = { kernel_shape: kernel, strides, dilations: rhsDilation, pads };
      const o = nchwcConv(x, w, L.aval.shape[1], Rh.aval.shape[0], L.aval.dtype, attrs) ?? op1("Conv", [x, w], attrs);
      env.set(e.outBinders[0], { name: o, c: outShape.slice() });
      return;
    }
    if (strides.some((s) => s !== 1)) throw unsupported("conv with both lhs dilation and window strides");
    // conv(dilate_s(x) padded (pl, pr), K) == ConvTranspose(x, W = swap01(flip(K)), strides s,
    // pads kd - 1 - p) with kd the dilated kernel size; a negative ConvTranspose pad means the
    // output extends into zeros (the kernel sees only padding there), added with Pad afterwards.
    const kd = kernel.map((k, i) => (k - 1) * rhsDilation[i] + 1);
    const tb = padding.map(([l], i) => kd[i] - 1 - l);
    const te = padding.map(([, r], i) => kd[i] - 1 - r);
    const big = 2 ** 31;
    const spatial = range(nsp).map((i) => i + 2);
    const flipped = op1("Slice", [w, i64(spatial.map(() => -1)), i64(spatial.map(() => -big)), i64(spatial), i64(spatial.map(() => -1))]);
    const wt = op1("Transpose", [flipped], { perm: [1, 0, ...spatial] });
    const pads = [...tb.map((v) => Math.max(0, v)), ...te.map((v) => Math.max(0, v))];
    stats.convTransposes++;
    let o = op1("ConvTranspose", [x, wt], { kernel_shape: kernel, strides: lhsDilation, dilations: rhsDilation, pads });
    const extra = [0, 0, ...tb.map((v) => Math.max(0, -v)), 0, 0, ...te.map((v) => Math.max(0, -v))];
    if (extra.some((v) => v > 0)) o = op1("Pad", [o, i64(extra)], { mode: "constant" });
    env.set(e.outBinders[0], { name: o, c: outShape.slice() });
  }

  /**
   * A 2-D Conv in onnxruntime's blocked channel layout (NCHWc, TranslateOptions.nchwcBlock): the
   * activations reordered in and out around it, the weight reordered to OIHWBiBo inside the graph.
   * onnxruntime's own NCHWc pass does this only for constant weights, and a training step's are inputs.
   */
  function nchwcConv(x: string, w: string, C: number, O: number, dtype: string, attrs: Record<string, number[]>): string | null {
    const bl = opts.nchwcBlock ?? 0;
    const kernel = attrs.kernel_shape;
    if (bl <= 1 || dtype !== "float32" || kernel.length !== 2 || C % bl !== 0 || O % bl !== 0) return null;
    const nchwc = (op: string, inputs: string[], a?: Record<string, AttrValue>) => {
      const o = g.fresh(op.toLowerCase());
      g.nodes.push({ op, inputs, outputs: [o], attrs: a, domain: NCHWC_DOMAIN });
      return o;
    };
    const blocked = op1("Reshape", [w, i64([O / bl, bl, C / bl, bl, ...kernel])]);
    const wr = op1("Reshape", [op1("Transpose", [blocked], { perm: [0, 2, 4, 5, 3, 1] }), i64([O, C, ...kernel])]);
    stats.nchwcConvs++;
    return nchwc("ReorderOutput", [nchwc("Conv", [nchwc("ReorderInput", [x]), wr], attrs)], { channels: O });
  }

  // gather(x, idx...) with params.axis (the indexed axes of x) and params.outDim (where the
  // broadcast index dims go). One index array is ONNX Gather (+ a transpose when outDim moves).
  function lowerGather(e: EqnLike) {
    const axis = e.params.axis as number[];
    const outDim = e.params.outDim as number;
    if (axis.length !== 1 || e.inputs.length !== 2) throw unsupported(`gather with ${axis.length} index arrays`);
    const ax = axis[0];
    const data = readFull(e.inputs[0]);
    const idx = readFull(e.inputs[1]);
    let o = op1("Gather", [data, idx], { axis: ax });
    const ir = e.inputs[1].aval.shape.length;
    const rank = e.outBinders[0].aval.shape.length;
    if (outDim !== ax) {
      // Gather put the index dims at [ax, ax + ir); move them to [outDim, outDim + ir).
      const rest = range(rank).filter((i) => i < ax || i >= ax + ir);
      const idxDims = range(ir).map((i) => ax + i);
      const perm = [...rest.slice(0, outDim), ...idxDims, ...rest.slice(outDim)];
      o = transpose(o, perm);
    }
    env.set(e.outBinders[0], { name: o, c: e.outBinders[0].aval.shape.slice() });
  }

  const outputs = jaxpr.outs.map((a, i) => ({ name: outputNames[i], src: readFull(a), shape: a.aval.shape.slice(), dtype: a.aval.dtype }));
  if (optimize) {
    const { nodes: unique, alias } = dedupe(
      dropDead(
        g.nodes,
        outputs.map((o) => o.src),
      ),
    );
    for (const o of outputs) o.src = alias.get(o.src) ?? o.src;
    const srcs = outputs.map((o) => o.src);
    const nodes = foldTransposes(dropDead(unique, srcs), srcs, (h) => g.fresh(h));
    g.nodes.splice(0, g.nodes.length, ...nodes);
  }
  const bound = optimize ? bindOutputs(g.nodes, outputs) : new Set<string>();
  for (const o of outputs) if (!bound.has(o.name)) g.nodes.push({ op: "Identity", inputs: [o.src], outputs: [o.name] });
  const inputs = jaxpr.inBinders
    .map((v, i) => ({ name: inputNames[i], shape: v.aval.shape.slice(), dtype: v.aval.dtype, isConst: consts.has(i) }))
    .filter((x) => !x.isConst)
    .map(({ name, shape, dtype }) => ({ name, shape, dtype }));
  if (optimize) g.nodes.splice(0, g.nodes.length, ...dropDead(g.nodes, outputNames));
  stats.nodes = g.nodes.length;
  // Constants the jaxpr closed over but no node reads (e.g. after simplify) are dropped.
  const used = new Set(g.nodes.flatMap((n) => n.inputs));
  g.initializers.splice(0, g.initializers.length, ...g.initializers.filter((t) => used.has(t.name)));
  const bytes = g.encode(
    inputs.map((x) => ({ name: x.name, elemType: elemType(x.dtype), dims: x.shape })),
    outputs.map((x) => ({ name: x.name, elemType: elemType(x.dtype), dims: x.shape })),
    opts.graphName ?? "flowmatch_traced",
    ONNX_OPSET,
  );
  return { bytes, inputs, outputs: outputs.map(({ name, shape, dtype }) => ({ name, shape, dtype })), stats };
}

/**
 * Peepholes on the emitted nodes (in order): Add(a, Neg(b)) is Sub(a, b); Transpose(Transpose(x)) composes into one
 * (or none), and a 2-D Transpose(MatMul(a, b)) whose product has no other reader becomes
 * MatMul(b^T, a^T), so a transposed weight gradient is computed in place instead of copied
 * (onnxruntime folds the operand transposes into FusedMatMul).
 */
function foldTransposes(nodes: NodeSpec[], graphOutputs: string[], fresh: (hint: string) => string): NodeSpec[] {
  const producer = new Map<string, NodeSpec>();
  const uses = new Map<string, number>();
  for (const x of [...nodes.flatMap((n) => n.inputs), ...graphOutputs]) uses.set(x, (uses.get(x) ?? 0) + 1);
  const out: NodeSpec[] = [];
  // Values that became another value (a transpose pair that cancels), read through.
  const alias = new Map<string, string>();
  const emit = (n: NodeSpec) => {
    out.push(n);
    for (const o of n.outputs) producer.set(o, n);
  };
  const keepName = new Set(graphOutputs);
  const permOf = (n: NodeSpec) => n.attrs?.perm as number[];
  /** x transposed by perm, reading through a Transpose that produced x. */
  const transposed = (x: string, perm: number[]): string => {
    const src = producer.get(x);
    if (src?.op === "Transpose") {
      const p0 = permOf(src);
      const p = perm.map((q) => p0[q]);
      if (p.every((q, i) => q === i)) return src.inputs[0];
      x = src.inputs[0];
      perm = p;
    }
    const o = fresh("transpose");
    emit({ op: "Transpose", inputs: [x], outputs: [o], attrs: { perm } });
    return o;
  };
  for (const n of nodes) {
    n.inputs = n.inputs.map((x) => alias.get(x) ?? x);
    if (n.op === "Add") {
      // a + (-b) = a - b (jax-js subtracts that way): the Neg goes when nothing else reads it.
      const [a, b] = n.inputs;
      const na = producer.get(a)?.op === "Neg" ? producer.get(a) : undefined;
      const nb = producer.get(b)?.op === "Neg" ? producer.get(b) : undefined;
      if (nb) emit({ op: "Sub", inputs: [a, nb.inputs[0]], outputs: n.outputs });
      else if (na) emit({ op: "Sub", inputs: [b, na.inputs[0]], outputs: n.outputs });
      else emit(n);
      continue;
    }
    if (n.op !== "Transpose") {
      emit(n);
      continue;
    }
    const perm = permOf(n);
    const src = producer.get(n.inputs[0]);
    if (src?.op === "MatMul" && perm.length === 2 && perm[0] === 1 && uses.get(src.outputs[0]) === 1) {
      // A rank-2 MatMul output has rank-2 operands.
      emit({ op: "MatMul", inputs: [transposed(src.inputs[1], [1, 0]), transposed(src.inputs[0], [1, 0])], outputs: n.outputs });
    } else if (src?.op === "Transpose") {
      const p0 = permOf(src);
      const p = perm.map((q) => p0[q]);
      if (!p.every((q, i) => q === i)) emit({ op: "Transpose", inputs: [src.inputs[0]], outputs: n.outputs, attrs: { perm: p } });
      else if (keepName.has(n.outputs[0])) emit({ op: "Identity", inputs: [src.inputs[0]], outputs: n.outputs });
      else alias.set(n.outputs[0], src.inputs[0]);
    } else emit(n);
  }
  return out;
}

/** Ops whose two inputs commute (their order does not matter for dedupe). */
const COMMUTATIVE = new Set(["Add", "Mul", "Min", "Max", "And", "Or", "Equal"]);

/**
 * Common subexpressions: a node computing what an earlier one computes (same op, attributes and
 * inputs, in either order for commutative ops) is dropped and its outputs read the earlier node's.
 * jax-js's transposes emit such pairs (e.g. GroupNorm's gradient multiplies the same two values as
 * a * b and b * a); onnxruntime's own pass compares inputs in order only. Returns the kept nodes
 * and the dropped outputs' replacements.
 */
function dedupe(nodes: NodeSpec[]): { nodes: NodeSpec[]; alias: Map<string, string> } {
  const alias = new Map<string, string>();
  const seen = new Map<string, NodeSpec>();
  const kept: NodeSpec[] = [];
  for (const n of nodes) {
    n.inputs = n.inputs.map((x) => alias.get(x) ?? x);
    const ins = COMMUTATIVE.has(n.op) && n.inputs.length === 2 ? n.inputs.slice().sort() : n.inputs;
    const key = JSON.stringify([n.op, n.domain ?? "", ins, n.outputs.length, n.attrs ?? {}]);
    const prev = seen.get(key);
    if (prev) n.outputs.forEach((o, i) => alias.set(o, prev.outputs[i]));
    else {
      seen.set(key, n);
      kept.push(n);
    }
  }
  return { nodes: kept, alias };
}

/**
 * Graph outputs named directly on the node that computes them (no Identity copy per output: the
 * training step has one per state tensor). Not for a graph input or constant, nor a value that
 * is already another output. Returns the output names bound.
 */
function bindOutputs(nodes: NodeSpec[], outputs: { name: string; src: string }[]): Set<string> {
  const produced = new Set(nodes.flatMap((n) => n.outputs));
  const rename = new Map<string, string>();
  for (const o of outputs) if (produced.has(o.src) && !rename.has(o.src)) rename.set(o.src, o.name);
  for (const n of nodes) {
    n.inputs = n.inputs.map((x) => rename.get(x) ?? x);
    n.outputs = n.outputs.map((x) => rename.get(x) ?? x);
  }
  const bound = new Set<string>();
  for (const o of outputs) {
    if (rename.get(o.src) === o.name) bound.add(o.name);
    else if (rename.has(o.src)) o.src = rename.get(o.src) as string; // a second output of one value: Identity of the first
  }
  return bound;
}

/** Nodes no output depends on (e.g. reshapes that folding bypassed), dropped walking back from the outputs. */
function dropDead(nodes: NodeSpec[], outputNames: string[]): NodeSpec[] {
  const live = new Set(outputNames);
  const kept: NodeSpec[] = [];
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    if (!n.outputs.some((o) => live.has(o))) continue;
    kept.push(n);
    for (const x of n.inputs) live.add(x);
  }
  return kept.reverse();
}

/** Smallest cap c in 1 / (1 + e^min(-x, c)) treated as the plain sigmoid: they differ by < e^-c = 1.8e-35. */
const SIGMOID_MIN_CAP = 80;

/** One stable-sigmoid chain s = 1 / (1 + e^min(-x, c)) of the jaxpr (core/models/layers.ts sigmoid). */
interface SigmoidChain {
  x: AtomLike;
  /** s. */
  out: AtomLike;
  /** e^min(-x, c). */
  exp: AtomLike;
  /** s (s - 1), emitted once when a gradient needs it. */
  slope?: string;
}

/**
 * A reshape of a compact (broadcast) value that keeps what it can compact: the real axes of `from`
 * and `to` fall into groups of equal size (axes merged or split together); a group whose input axes
 * are all broadcast stays broadcast, and only the broadcast axes of mixed groups are expanded. E.g. a
 * per-(sample, group) value [B, G, 1, 1, 1] reshaped from [B, G, C/G, H, W] to [B, C, H, W] expands
 * to [B, G, C/G, 1, 1] and becomes [B, C, 1, 1], instead of a full [B, C, H, W] tensor.
 * Null when nothing would stay compact.
 */
function compactReshape(c: number[], from: number[], to: number[]): { expand: number[]; out: number[] } | null {
  const fi = range(from.length).filter((i) => from[i] !== 1);
  const ti = range(to.length).filter((j) => to[j] !== 1);
  const expand = c.slice();
  const out = to.map(() => 1);
  let kept = false;
  let i = 0;
  let j = 0;
  while (i < fi.length && j < ti.length) {
    // One group: the shortest runs of input and output axes with equal products.
    const gi = [fi[i++]];
    const gj = [ti[j++]];
    let pi = from[gi[0]];
    let pj = to[gj[0]];
    while (pi !== pj) {
      if (pi < pj && i < fi.length) {
        gi.push(fi[i++]);
        pi *= from[gi[gi.length - 1]];
      } else if (pj < pi && j < ti.length) {
        gj.push(ti[j++]);
        pj *= to[gj[gj.length - 1]];
      } else return null;
    }
    if (gi.every((k) => c[k] === 1)) kept = true;
    else {
      for (const k of gi) expand[k] = from[k];
      for (const k of gj) out[k] = to[k];
    }
  }
  return kept && i === fi.length && j === ti.length ? { expand, out } : null;
}

/** The non-literal operand of a binary eqn whose other operand is the literal `value`. */
function litOperand(e: EqnLike, ok: (value: number) => boolean): AtomLike | null {
  if (e.inputs.length !== 2) return null;
  const [a, b] = e.inputs;
  if (isLit(a) && !isLit(b) && ok(a.value as number)) return b;
  if (isLit(b) && !isLit(a) && ok(b.value as number)) return a;
  return null;
}

/** The other operand of a `mul` eqn that has `v` as one operand. */
function mulOperand(e: EqnLike, v: AtomLike): AtomLike | null {
  if (e.primitive !== "mul") return null;
  if (e.inputs[0] === v && !isLit(e.inputs[1])) return e.inputs[1];
  if (e.inputs[1] === v && !isLit(e.inputs[0])) return e.inputs[0];
  return null;
}

/**
 * The float32 chains neg -> min(., c >= SIGMOID_MIN_CAP) -> exp -> add 1 -> reciprocal (the stable
 * sigmoid), by output, and the `compare less c, -x` masks of their gradients (the min's transpose).
 * The translator emits each as one ONNX Sigmoid and its gradient as X s (s - 1); the chain's other
 * nodes then have no reader and are dropped.
 */
function findSigmoids(eqns: EqnLike[]): {
  byOut: Map<AtomLike, SigmoidChain>;
  byMask: Map<AtomLike, SigmoidChain>;
  producer: Map<AtomLike, EqnLike>;
} {
  const producer = new Map<AtomLike, EqnLike>();
  for (const e of eqns) for (const o of e.outBinders) producer.set(o, e);
  const byOut = new Map<AtomLike, SigmoidChain>();
  const byNeg = new Map<AtomLike, { chain: SigmoidChain; cap: number }>();
  for (const e of eqns) {
    const out = e.outBinders[0];
    if (e.primitive !== "reciprocal" || out.aval.dtype !== "float32") continue;
    const add = producer.get(e.inputs[0]);
    const ex = add?.primitive === "add" ? litOperand(add, (v) => v === 1) : null;
    const exe = ex && producer.get(ex);
    if (!ex || exe?.primitive !== "exp") continue;
    const mn = producer.get(exe.inputs[0]);
    const capAtom = mn?.primitive === "min" ? mn.inputs.find(isLit) : undefined;
    const cap = capAtom ? (capAtom.value as number) : Number.NaN;
    const neg = mn && cap >= SIGMOID_MIN_CAP ? litOperand(mn, (v) => v === cap) : null;
    const nege = neg && producer.get(neg);
    if (!neg || nege?.primitive !== "neg" || isLit(nege.inputs[0])) continue;
    const x = nege.inputs[0];
    if (!eqShape(x.aval.shape, out.aval.shape)) continue;
    const chain: SigmoidChain = { x, out, exp: ex };
    byOut.set(out, chain);
    byNeg.set(neg, { chain, cap });
  }
  const byMask = new Map<AtomLike, SigmoidChain>();
  for (const e of eqns) {
    if (e.primitive !== "compare" || e.params.op !== "less" || !isLit(e.inputs[0]) || isLit(e.inputs[1])) continue;
    const m = byNeg.get(e.inputs[1]);
    if (m && m.cap === e.inputs[0].value) byMask.set(e.outBinders[0], m.chain);
  }
  return { byOut, byMask, producer };
}
