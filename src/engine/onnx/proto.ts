// ONNX protobuf for the jaxpr translator (./translate.ts) and the graph passes after it (./batch.ts,
// src/io/onnx.ts): the subset of onnx/onnx.proto we write (field numbers as upstream), a small graph
// builder, and decode/encode of whole models. No onnxruntime here, so it stays browser-safe.
import protobuf from "protobufjs";

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

/** ONNX TensorProto.DataType codes. */
export const ONNX_TYPE = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11, UINT32: 12 } as const;
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, INTS: 7 } as const;
/** IR version per opset: 8 introduced opset 17 and 18. */
const IR_VERSION: Record<number, number> = { 17: 8, 18: 8 };

let modelType: protobuf.Type | null = null;
function onnxModelType(): protobuf.Type {
  modelType ??= protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType("onnx.ModelProto");
  return modelType;
}

/** The nodes of a serialized model (op type, inputs, outputs): for tools and tests that check a graph's structure. */
export function decodeOnnxNodes(bytes: Uint8Array): { op: string; inputs: string[]; outputs: string[] }[] {
  const m = onnxModelType().toObject(onnxModelType().decode(bytes)) as {
    graph?: { node?: { op_type: string; input?: string[]; output?: string[] }[] };
  };
  return (m.graph?.node ?? []).map((n) => ({ op: n.op_type, inputs: n.input ?? [], outputs: n.output ?? [] }));
}

/** Node count per op type of a serialized model (development tools: what onnxruntime fused). */
export function onnxOpCounts(bytes: Uint8Array): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of decodeOnnxNodes(bytes)) counts[n.op] = (counts[n.op] ?? 0) + 1;
  return counts;
}

export type AttrValue = number | number[] | string | { float: number };
export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, AttrValue>;
  /** Operator set domain (default the ONNX one); each one used is imported at version 1. */
  domain?: string;
}
export interface ValueSpec {
  name: string;
  /** ONNX element type (default FLOAT). */
  elemType?: number;
  /** Static sizes, or a string for a symbolic dimension. */
  dims: (number | string)[];
}

/** Accumulates nodes and initializers with unique intermediate names. */
export class GraphBuilder {
  readonly nodes: NodeSpec[] = [];
  readonly initializers: { name: string; dims: number[]; dataType: number; raw: Uint8Array }[] = [];
  private counter = 0;

  fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  op(op: string, inputs: string[], attrs?: Record<string, AttrValue>, hint = op.toLowerCase()): string {
    return this.opN(op, inputs, 1, attrs, hint)[0];
  }

  /** A node with several outputs (Split). */
  opN(op: string, inputs: string[], nOut: number, attrs?: Record<string, AttrValue>, hint = op.toLowerCase()): string[] {
    const outputs = Array.from({ length: nOut }, () => this.fresh(hint));
    this.nodes.push({ op, inputs, outputs, attrs });
    return outputs;
  }

  /** An initializer from raw little-endian bytes (copied). */
  rawConst(name: string, raw: Uint8Array, dims: number[], dataType: number): string {
    this.initializers.push({ name, dims, dataType, raw: raw.slice() });
    return name;
  }

  floatConst(name: string, data: Float32Array, dims: number[]): string {
    return this.rawConst(name, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), dims, ONNX_TYPE.FLOAT);
  }

  int64Const(name: string, values: number[]): string {
    const data = BigInt64Array.from(values, (v) => BigInt(v));
    return this.rawConst(name, new Uint8Array(data.buffer), [values.length], ONNX_TYPE.INT64);
  }

  encode(inputs: ValueSpec[], outputs: ValueSpec[], name: string, opset = 17): Uint8Array {
    const irVersion = IR_VERSION[opset];
    if (irVersion === undefined) throw new Error(`GraphBuilder: no IR version known for opset ${opset}`);
    const valueInfo = (v: ValueSpec) => ({
      name: v.name,
      type: {
        tensor_type: {
          elem_type: v.elemType ?? ONNX_TYPE.FLOAT,
          shape: { dim: v.dims.map((d) => (typeof d === "string" ? { dim_param: d } : { dim_value: d })) },
        },
      },
    });
    const attribute = (key: string, v: AttrValue) => {
      if (typeof v === "string") return { name: key, type: ATTR.STRING, s: new TextEncoder().encode(v) };
      if (Array.isArray(v)) return { name: key, type: ATTR.INTS, ints: v };
      if (typeof v === "object") return { name: key, type: ATTR.FLOAT, f: v.float };
      return { name: key, type: ATTR.INT, i: v };
    };
    const Model = onnxModelType();
    const message = Model.fromObject({
      ir_version: irVersion,
      producer_name: "flowmatch",
      opset_import: [
        { domain: "", version: opset },
        ...[...new Set(this.nodes.flatMap((n) => (n.domain ? [n.domain] : [])))].map((domain) => ({ domain, version: 1 })),
      ],
      graph: {
        name,
        node: this.nodes.map((n, i) => ({
          name: `${n.op}_${i}`,
          op_type: n.op,
          input: n.inputs,
          output: n.outputs,
          attribute: Object.entries(n.attrs ?? {}).map(([k, v]) => attribute(k, v)),
          ...(n.domain ? { domain: n.domain } : {}),
        })),
        initializer: this.initializers.map((t) => ({ name: t.name, dims: t.dims, data_type: t.dataType, raw_data: t.raw })),
        input: inputs.map(valueInfo),
        output: outputs.map(valueInfo),
      },
    });
    return Model.encode(message).finish();
  }
}

/** A decoded ModelProto as plain data (int64 fields as numbers, bytes as Uint8Array), for graph passes. */
export interface OnnxModelData {
  graph: {
    node: { input?: string[]; output?: string[]; name?: string; op_type: string; attribute?: Record<string, unknown>[]; domain?: string }[];
    name?: string;
    initializer?: { name: string; dims?: number[]; data_type: number; raw_data?: Uint8Array }[];
    input?: OnnxValueInfo[];
    output?: OnnxValueInfo[];
  };
  [field: string]: unknown;
}
export interface OnnxValueInfo {
  name: string;
  type: { tensor_type: { elem_type: number; shape: { dim: { dim_value?: number; dim_param?: string }[] } } };
}

export function decodeOnnxModel(bytes: Uint8Array): OnnxModelData {
  const Model = onnxModelType();
  return Model.toObject(Model.decode(bytes), { longs: Number, arrays: true }) as OnnxModelData;
}

export function encodeOnnxModel(model: OnnxModelData): Uint8Array {
  const Model = onnxModelType();
  return Model.encode(Model.fromObject(model)).finish();
}
