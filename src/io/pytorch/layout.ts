// Tensor layouts between flowmatch and PyTorch (the modules in pytorch/model.py). Names are the same;
// flowmatch stores dense weights [in, out] and conv weights as im2col matrices [k*k*Cin, Cout] in
// (ky, kx, cin) order, PyTorch Linear [out, in] and Conv2d [Cout, Cin, k, k]; the class table
// (nn.Embedding [n, E]), biases and norms are the same in both. Adam moments are elementwise, so they
// convert exactly like their weight.
import { UserError } from "../../core/errors.js";
import type { HostParams } from "../../core/optim.js";

export type TorchModelKind = "mlp" | "unet";

/** How one parameter is laid out in PyTorch, derived from its flowmatch shape and the conv kernel size. */
type Rule = { kind: "same" } | { kind: "dense" } | { kind: "conv"; k: number };

/** Conv parameters of the UNet and their kernel size (1 for the 1x1 shortcut); names from unetParamShapes. */
function unetRule(name: string, rank: number): Rule {
  if (rank !== 2 || name === "class.weight") return { kind: "same" };
  if (/^(time\.\d|.*\.emb|.*\.attn\d*\.(qkv|proj))\.weight$/.test(name)) return { kind: "dense" };
  return { kind: "conv", k: name.endsWith(".skip.weight") ? 1 : 3 };
}

function rule(kind: TorchModelKind, name: string, rank: number): Rule {
  if (kind === "mlp") return rank === 2 ? { kind: "dense" } : { kind: "same" };
  return unetRule(name, rank);
}

/** The PyTorch shape of a parameter whose flowmatch shape is `shape`. */
export function torchShape(kind: TorchModelKind, name: string, shape: readonly number[]): number[] {
  const r = rule(kind, name, shape.length);
  if (r.kind === "dense") return [shape[1], shape[0]];
  if (r.kind === "conv") return [shape[1], shape[0] / (r.k * r.k), r.k, r.k];
  return shape.slice();
}

/** PyTorch shapes for a record of flowmatch shapes (mlpParamShapes / unetParamShapes). */
export function torchShapes(kind: TorchModelKind, shapes: Record<string, number[]>): Record<string, number[]> {
  return Object.fromEntries(Object.entries(shapes).map(([name, s]) => [name, torchShape(kind, name, s)]));
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j];
  return out;
}

/** One flowmatch tensor in PyTorch's layout. */
export function toTorchTensor(
  kind: TorchModelKind,
  name: string,
  shape: readonly number[],
  data: Float32Array,
): { shape: number[]; data: Float32Array } {
  const r = rule(kind, name, shape.length);
  if (r.kind === "dense") return { shape: [shape[1], shape[0]], data: transpose2d(data, shape[0], shape[1]) };
  if (r.kind === "conv") {
    const [rows, cout] = shape;
    const cin = rows / (r.k * r.k);
    const out = new Float32Array(data.length);
    // im2col row (ky * k + kx) * cin + ci, column co  ->  [co][ci][ky][kx]
    for (let ky = 0; ky < r.k; ky++)
      for (let kx = 0; kx < r.k; kx++)
        for (let ci = 0; ci < cin; ci++)
          for (let co = 0; co < cout; co++) out[((co * cin + ci) * r.k + ky) * r.k + kx] = data[((ky * r.k + kx) * cin + ci) * cout + co];
    return { shape: [cout, cin, r.k, r.k], data: out };
  }
  return { shape: shape.slice(), data: data.slice() };
}

/** One PyTorch tensor in flowmatch's layout; `fmShape` is the shape flowmatch's model needs. */
export function fromTorchTensor(
  kind: TorchModelKind,
  name: string,
  fmShape: readonly number[],
  data: Float32Array,
): { shape: number[]; data: Float32Array } {
  const r = rule(kind, name, fmShape.length);
  if (r.kind === "dense") return { shape: fmShape.slice(), data: transpose2d(data, fmShape[1], fmShape[0]) };
  if (r.kind === "conv") {
    const [rows, cout] = fmShape;
    const cin = rows / (r.k * r.k);
    const out = new Float32Array(data.length);
    for (let ky = 0; ky < r.k; ky++)
      for (let kx = 0; kx < r.k; kx++)
        for (let ci = 0; ci < cin; ci++)
          for (let co = 0; co < cout; co++) out[((ky * r.k + kx) * cin + ci) * cout + co] = data[((co * cin + ci) * r.k + ky) * r.k + kx];
    return { shape: fmShape.slice(), data: out };
  }
  return { shape: fmShape.slice(), data: data.slice() };
}

/** A whole flowmatch parameter record in PyTorch's layout. */
export function paramsToTorch(kind: TorchModelKind, params: HostParams): HostParams {
  const out: HostParams = {};
  for (const [name, p] of Object.entries(params)) out[name] = toTorchTensor(kind, name, p.shape, p.data);
  return out;
}

/**
 * A PyTorch parameter record back in flowmatch's layout, checked against the model's flowmatch
 * shapes: a missing, unexpected or misshaped tensor is refused naming it, its shape and the fix.
 */
export function paramsFromTorch(
  kind: TorchModelKind,
  torch: HostParams,
  fmShapes: Record<string, number[]>,
  source: string,
  fix: string,
): HostParams {
  const out: HostParams = {};
  for (const [name, fmShape] of Object.entries(fmShapes)) {
    const t = Object.prototype.hasOwnProperty.call(torch, name) ? torch[name] : undefined;
    const want = torchShape(kind, name, fmShape);
    if (t === undefined) throw new UserError(`${source}: tensor "${name}" is missing (the model needs [${want.join(", ")}]); ${fix}`);
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new UserError(`${source}: tensor "${name}" is [${t.shape.join(", ")}] but the model needs [${want.join(", ")}]; ${fix}`);
    }
    out[name] = fromTorchTensor(kind, name, fmShape, t.data);
  }
  const extra = Object.keys(torch).find((name) => !Object.prototype.hasOwnProperty.call(fmShapes, name));
  if (extra !== undefined)
    throw new UserError(`${source}: tensor "${extra}" [${torch[extra].shape.join(", ")}] is not a parameter of this model; ${fix}`);
  return out;
}
