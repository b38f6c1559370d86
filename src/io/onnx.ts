// ONNX export of the velocity networks (opset 17) and an onnxruntime-node velocity runtime.
// The graph is built by hand from the same parameter record the engine trains, so an exported
// model reproduces unetApply / the MLP to float32 rounding.
import protobuf from "protobufjs";
import * as ort from "onnxruntime-node";
import { UserError } from "../core/errors.js";
import { unetBlocks, unetParamShapes, type UnetConfig } from "../core/models/unet.js";
import { mlpLayerSizes, TIME_EMBED_SCALE, type MlpConfig } from "../core/models/mlp.js";
import { sinusoidalFrequencies } from "../core/models/layers.js";

// The subset of onnx/onnx.proto (field numbers as upstream) that the exporter writes.
const ONNX_PROTO = `
syntax = "proto3";
package onnx;
message AttributeProto {
  enum AttributeType { UNDEFINED = 0; FLOAT = 1; INT = 2; STRING = 3; TENSOR = 4; GRAPH = 5; FLOATS = 6; INTS = 7; STRINGS = 8; }
  string name = 1;
  float f = 2;
  int64 i = 3;
  bytes s = 4;
  TensorProto t = 5;
  repeated float floats = 7;
  repeated int64 ints = 8;
  AttributeType type = 20;
}
message ValueInfoProto { string name = 1; TypeProto type = 2; }
message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  repeated AttributeProto attribute = 5;
  string domain = 7;
}
message ModelProto {
  int64 ir_version = 1;
  string producer_name = 2;
  string producer_version = 3;
  string doc_string = 6;
  GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
}
message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
}
message TensorProto {
  repeated int64 dims = 1;
  int32 data_type = 2;
  string name = 8;
  bytes raw_data = 9;
}
message TensorShapeProto {
  message Dimension { oneof value { int64 dim_value = 1; string dim_param = 2; } }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor { int32 elem_type = 1; TensorShapeProto shape = 2; }
  oneof value { Tensor tensor_type = 1; }
}
message OperatorSetIdProto { string domain = 1; int64 version = 2; }
`;

const OPSET = 17;
/** IR version 8 is the one that introduced opset 17. */
const IR_VERSION = 8;
const FLOAT = 1;
const INT64 = 7;
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, INTS: 7 } as const;

let modelType: protobuf.Type | null = null;
function onnxModelType(): protobuf.Type {
  modelType ??= protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType("onnx.ModelProto");
  return modelType;
}

type AttrValue = number | number[] | string | { float: number };
interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, AttrValue>;
}

/** Accumulates nodes and initializers with unique intermediate names. */
class GraphBuilder {
  readonly nodes: NodeSpec[] = [];
  readonly initializers: { name: string; dims: number[]; dataType: number; raw: Uint8Array }[] = [];
  private counter = 0;

  fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  op(op: string, inputs: string[], attrs?: Record<string, AttrValue>, hint = op.toLowerCase()): string {
    const out = this.fresh(hint);
    this.nodes.push({ op, inputs, outputs: [out], attrs });
    return out;
  }

  floatConst(name: string, data: Float32Array, dims: number[]): string {
    const raw = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    this.initializers.push({ name, dims, dataType: FLOAT, raw });
    return name;
  }

  int64Const(name: string, values: number[]): string {
    const data = BigInt64Array.from(values, (v) => BigInt(v));
    this.initializers.push({ name, dims: [values.length], dataType: INT64, raw: new Uint8Array(data.buffer) });
    return name;
  }

  encode(inputs: { name: string; elemType: number; dims: (number | string)[] }[], outputs: { name: string; dims: (number | string)[] }[], name: string): Uint8Array {
    const valueInfo = (n: string, elemType: number, dims: (number | string)[]) => ({
      name: n,
      type: { tensor_type: { elem_type: elemType, shape: { dim: dims.map((d) => (typeof d === "string" ? { dim_param: d } : { dim_value: d })) } } },
    });
    const attribute = (key: string, v: AttrValue) => {
      if (typeof v === "string") return { name: key, type: ATTR.STRING, s: new TextEncoder().encode(v) };
      if (Array.isArray(v)) return { name: key, type: ATTR.INTS, ints: v };
      if (typeof v === "object") return { name: key, type: ATTR.FLOAT, f: v.float };
      return { name: key, type: ATTR.INT, i: v };
    };
    const Model = onnxModelType();
    const message = Model.fromObject({
      ir_version: IR_VERSION,
      producer_name: "flowmatch",
      opset_import: [{ domain: "", version: OPSET }],
      graph: {
        name,
        node: this.nodes.map((n, i) => ({
          name: `${n.op}_${i}`,
          op_type: n.op,
          input: n.inputs,
          output: n.outputs,
          attribute: Object.entries(n.attrs ?? {}).map(([k, v]) => attribute(k, v)),
        })),
        initializer: this.initializers.map((t) => ({ name: t.name, dims: t.dims, data_type: t.dataType, raw_data: t.raw })),
        input: inputs.map((i) => valueInfo(i.name, i.elemType, i.dims)),
        output: outputs.map((o) => valueInfo(o.name, FLOAT, o.dims)),
      },
    });
    return Model.encode(message).finish();
  }
}

function need(params: Record<string, Float32Array>, name: string, size: number): Float32Array {
  const p = params[name];
  if (!p) throw new UserError(`ONNX export: parameter "${name}" is missing; the weights do not match the model config`);
  if (p.length !== size) throw new UserError(`ONNX export: parameter "${name}" has ${p.length} values, the config expects ${size}`);
  return p;
}

/** x @ W + b on [B, in]. */
function denseNode(g: GraphBuilder, params: Record<string, Float32Array>, prefix: string, x: string, fanIn: number, fanOut: number): string {
  const w = g.floatConst(`${prefix}.weight`, need(params, `${prefix}.weight`, fanIn * fanOut), [fanIn, fanOut]);
  const b = g.floatConst(`${prefix}.bias`, need(params, `${prefix}.bias`, fanOut), [fanOut]);
  return g.op("Add", [g.op("MatMul", [x, w]), b]);
}

// onnxruntime's Sigmoid is finite for every finite input (checked at +-1e4 against the engine's
// stable sigmoid in test/activations.test.ts), so the exported graph keeps the one fused op.
function siluNode(g: GraphBuilder, x: string): string {
  return g.op("Mul", [x, g.op("Sigmoid", [x])], undefined, "silu");
}

/** Sinusoidal features of TIME_EMBED_SCALE * t: [B] -> [B, dim] (matches sinusoidalEmbedding). */
function timeFeatures(g: GraphBuilder, t: string, dim: number): string {
  const half = Math.floor(dim / 2);
  const scale = g.floatConst("const.time_scale", Float32Array.of(TIME_EMBED_SCALE), []);
  const freqs = g.floatConst("const.time_freqs", sinusoidalFrequencies(dim), [1, half]);
  const column = g.op("Unsqueeze", [g.op("Mul", [t, scale]), g.int64Const("const.axes1", [1])]);
  const args = g.op("Mul", [column, freqs]);
  return g.op("Concat", [g.op("Sin", [args]), g.op("Cos", [args])], { axis: 1 });
}

/**
 * The 2-D velocity MLP (src/core/models/mlp.ts): inputs x [B, dim] and t [B] float32, output v [B, dim].
 * Layout: concat([x, sinusoidal(1000 t)]) (or raw t when timeEmbDim = 0), dense layers `layers.i`
 * with SiLU between, last layer linear.
 */
export function exportMlpOnnx(params: Record<string, Float32Array>, cfg: MlpConfig): Uint8Array {
  const g = new GraphBuilder();
  const sizes = mlpLayerSizes(cfg);
  const tFeat = cfg.timeEmbDim > 0 ? timeFeatures(g, "t", cfg.timeEmbDim) : g.op("Unsqueeze", ["t", g.int64Const("const.axes1", [1])]);
  let h = g.op("Concat", ["x", tFeat], { axis: 1 });
  for (let i = 0; i + 1 < sizes.length; i++) {
    h = denseNode(g, params, `layers.${i}`, h, sizes[i], sizes[i + 1]);
    if (i + 2 < sizes.length) h = siluNode(g, h);
  }
  g.nodes.push({ op: "Identity", inputs: [h], outputs: ["v"] });
  return g.encode(
    [
      { name: "x", elemType: FLOAT, dims: ["B", cfg.dim] },
      { name: "t", elemType: FLOAT, dims: ["B"] },
    ],
    [{ name: "v", dims: ["B", cfg.dim] }],
    "flowmatch_mlp",
  );
}

/**
 * The image UNet (src/core/models/unet.ts): inputs x [B, H, W, C] float32 (NHWC like the engine),
 * t [B] float32, y [B] int64 labels (numClasses = null class); output v [B, H, W, C].
 * Internally NCHW: one Transpose in, one out. GroupNorm = Reshape + InstanceNormalization + Reshape + Mul/Add.
 */
export function exportUnetOnnx(params: Record<string, Float32Array>, cfg: UnetConfig): Uint8Array {
  const shapes = unetParamShapes(cfg);
  for (const [name, shape] of Object.entries(shapes)) need(params, name, shape.reduce((a, b) => a * b, 1));
  const g = new GraphBuilder();
  const E = cfg.timeEmbDim;
  const axes23 = g.int64Const("const.axes23", [2, 3]);

  // im2col weight [k*k*cin, cout] in (ky, kx, cin) order -> ONNX OIHW.
  const conv = (prefix: string, x: string, opts: { stride?: number; kernel?: number } = {}): string => {
    const [rows, cout] = shapes[`${prefix}.weight`];
    const k = opts.kernel ?? 3;
    const cin = rows / (k * k);
    const src = params[`${prefix}.weight`];
    const oihw = new Float32Array(rows * cout);
    for (let ky = 0; ky < k; ky++)
      for (let kx = 0; kx < k; kx++)
        for (let c = 0; c < cin; c++)
          for (let o = 0; o < cout; o++) oihw[((o * cin + c) * k + ky) * k + kx] = src[((ky * k + kx) * cin + c) * cout + o];
    const w = g.floatConst(`${prefix}.weight`, oihw, [cout, cin, k, k]);
    const b = g.floatConst(`${prefix}.bias`, params[`${prefix}.bias`], [cout]);
    const p = (k - 1) >> 1;
    const s = opts.stride ?? 1;
    return g.op("Conv", [x, w, b], { kernel_shape: [k, k], pads: [p, p, p, p], strides: [s, s] });
  };
  const groupNorm = (prefix: string, x: string): string => {
    const c = shapes[`${prefix}.weight`][0];
    const G = cfg.groups;
    const grouped = g.op("Reshape", [x, g.int64Const(g.fresh("const.group_shape"), [0, G, -1])]);
    const ones = g.floatConst(g.fresh("const.ones"), new Float32Array(G).fill(1), [G]);
    const zeros = g.floatConst(g.fresh("const.zeros"), new Float32Array(G), [G]);
    const normed = g.op("InstanceNormalization", [grouped, ones, zeros], { epsilon: { float: 1e-5 } });
    const back = g.op("Reshape", [normed, g.op("Shape", [x])]);
    const gamma = g.floatConst(`${prefix}.weight`, params[`${prefix}.weight`], [c, 1, 1]);
    const beta = g.floatConst(`${prefix}.bias`, params[`${prefix}.bias`], [c, 1, 1]);
    return g.op("Add", [g.op("Mul", [back, gamma]), beta]);
  };
  const resBlock = (spec: { prefix: string; cin: number; cout: number }, x: string, embAct: string): string => {
    const { prefix, cin, cout } = spec;
    let h = conv(`${prefix}.conv1`, siluNode(g, groupNorm(`${prefix}.norm1`, x)));
    const e = g.op("Unsqueeze", [denseNode(g, params, `${prefix}.emb`, embAct, E, cout), axes23]);
    h = g.op("Add", [h, e]);
    h = conv(`${prefix}.conv2`, siluNode(g, groupNorm(`${prefix}.norm2`, h)));
    const shortcut = cin === cout ? x : conv(`${prefix}.skip`, x, { kernel: 1 });
    return g.op("Add", [h, shortcut]);
  };

  let emb = denseNode(g, params, "time.0", timeFeatures(g, "t", E), E, E);
  emb = denseNode(g, params, "time.1", siluNode(g, emb), E, E);
  const table = g.floatConst("class.weight", params["class.weight"], shapes["class.weight"]);
  emb = g.op("Add", [emb, g.op("Gather", [table, "y"], { axis: 0 })]);
  const embAct = siluNode(g, emb);

  const { down, mid, up } = unetBlocks(cfg);
  let h = conv("stem", g.op("Transpose", ["x"], { perm: [0, 3, 1, 2] }));
  const skips: string[] = [];
  down.forEach((spec, i) => {
    h = resBlock(spec, h, embAct);
    skips.push(h);
    h = conv(`down.${i}.downsample`, h, { stride: 2 });
  });
  h = resBlock(mid, h, embAct);
  const scales = g.floatConst("const.upsample_scales", Float32Array.of(1, 1, 2, 2), [4]);
  for (const spec of up) {
    const i = spec.level;
    const up2 = g.op("Resize", [h, "", scales], { mode: "nearest", coordinate_transformation_mode: "asymmetric", nearest_mode: "floor" });
    h = conv(`up.${i}.upsample`, up2);
    h = g.op("Concat", [h, skips[i]], { axis: 1 });
    h = resBlock(spec, h, embAct);
  }
  h = conv("out.conv", siluNode(g, groupNorm("out.norm", h)));
  g.nodes.push({ op: "Transpose", inputs: [h], outputs: ["v"], attrs: { perm: [0, 2, 3, 1] } });
  const imageDims = ["B", cfg.height, cfg.width, cfg.inChannels];
  return g.encode(
    [
      { name: "x", elemType: FLOAT, dims: imageDims },
      { name: "t", elemType: FLOAT, dims: ["B"] },
      { name: "y", elemType: INT64, dims: ["B"] },
    ],
    [{ name: "v", dims: imageDims }],
    "flowmatch_unet",
  );
}

export interface OnnxFieldOptions {
  /** onnxruntime intra-op threads (default 2: this project targets small CPU machines). */
  threads?: number;
}

export interface OnnxField {
  /** One forward pass. x is [shape] flattened, t [B]; y [B] int64 labels for class-conditional models. */
  run(x: Float32Array, t: Float32Array, y: BigInt64Array | undefined, shape: number[]): Promise<Float32Array>;
  release(): Promise<void>;
}

/** Open an exported model in onnxruntime-node (CPU). */
export async function createOnnxField(modelBytes: Uint8Array, opts: OnnxFieldOptions = {}): Promise<OnnxField> {
  const session = await ort.InferenceSession.create(modelBytes, {
    intraOpNumThreads: opts.threads ?? 2,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
  });
  const needsLabels = session.inputNames.includes("y");
  return {
    async run(x, t, y, shape) {
      const batch = shape[0];
      if (t.length !== batch) throw new UserError(`ONNX field: t has ${t.length} entries for a batch of ${batch}`);
      const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor("float32", x, shape), t: new ort.Tensor("float32", t, [batch]) };
      if (needsLabels) {
        if (!y || y.length !== batch) throw new UserError(`ONNX field: this model is class-conditional and needs ${batch} int64 labels`);
        feeds.y = new ort.Tensor("int64", y, [batch]);
      }
      const result = await session.run(feeds);
      const v = result.v;
      const data = v.data;
      if (!(data instanceof Float32Array)) throw new Error(`ONNX field: output v has type ${v.type}, expected float32`);
      return data;
    },
    async release() {
      await session.release();
    },
  };
}
