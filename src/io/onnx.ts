// ONNX export of the velocity networks (opset 17) and an onnxruntime-node velocity runtime.
// The graph is built by hand from the same parameter record the engine trains, so an exported
// model reproduces unetApply / the MLP to float32 rounding.
import * as ort from "onnxruntime-node";
import { UserError } from "../core/errors.js";
import { GraphBuilder, ONNX_TYPE } from "../engine/onnx/proto.js";
import { unetBlocks, unetParamShapes, type UnetConfig } from "../core/models/unet.js";
import { mlpLayerSizes, type MlpConfig } from "../core/models/mlp.js";
import { sinusoidalFrequencies, TIME_EMBED_SCALE } from "../core/models/layers.js";

const FLOAT = ONNX_TYPE.FLOAT;
const INT64 = ONNX_TYPE.INT64;

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
