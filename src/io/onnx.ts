// ONNX export of the velocity networks: the model's own apply function (and, for guidance, the
// library's guidedVelocity) traced with the engine and translated by src/engine/onnx, so the
// exported graph is the network the engine runs, not a second implementation of it. The batch is
// symbolic ("B"). Running an export: ./onnxField.ts.
//
// Interface (unchanged from the hand-built exports): inputs x (MLP [B, dim]; UNet [B, H, W, C],
// NHWC), t [B] float32, y [B] int64 (UNet; numClasses = the null class), and for a guided UNet w, a
// float32 scalar; output v shaped like x. The UNet is traced in its NCHW layout (native Conv).
import { initEngine, fromHost, np, type Array } from "../engine/index.js";
import { traceToOnnxBatched } from "../engine/onnx/trace.js";
import { decodeOnnxModel, encodeOnnxModel, ONNX_TYPE } from "../engine/onnx/proto.js";
import { UserError } from "../core/errors.js";
import { guidedVelocity } from "../core/field.js";
import { velocityAndDivergence } from "../core/likelihood.js";
import { unetApply, unetParamShapes, type UnetConfig } from "../core/models/unet.js";
import { mlpModel, mlpParamShapes, type MlpConfig } from "../core/models/mlp.js";
import type { Params } from "../core/optim.js";

function checkWeights(params: Record<string, Float32Array>, shapes: Record<string, number[]>): void {
  for (const [name, shape] of Object.entries(shapes)) {
    const p = params[name];
    const size = shape.reduce((a, b) => a * b, 1);
    if (!p) throw new UserError(`ONNX export: parameter "${name}" is missing; the weights do not match the model config`);
    if (p.length !== size) throw new UserError(`ONNX export: parameter "${name}" has ${p.length} values, the config expects ${size}`);
  }
}

const toParams = (params: Record<string, Float32Array>, shapes: Record<string, number[]>): Params =>
  Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, fromHost(params[k], s)]));

/** Names for the traced inputs (jax-js flattens objects in insertion order): weights, then data. */
const inputNames = (shapes: Record<string, number[]>, data: string[]): string[] => [...Object.keys(shapes), ...data];

const LABELS_INT32 = "y.int32";

/** The engine takes int32 labels, users feed int64: graph input y int64, cast once on entry. */
function int64LabelInput(bytes: Uint8Array): Uint8Array {
  const model = decodeOnnxModel(bytes);
  const input = (model.graph.input ?? []).find((v) => v.name === LABELS_INT32);
  if (!input) throw new Error(`ONNX export: the traced graph has no ${LABELS_INT32} input`);
  input.name = "y";
  input.type.tensor_type.elem_type = ONNX_TYPE.INT64;
  model.graph.node.unshift({
    op_type: "Cast",
    input: ["y"],
    output: [LABELS_INT32],
    name: "labels_int32",
    attribute: [{ name: "to", type: 2, i: ONNX_TYPE.INT32 }],
  });
  return encodeOnnxModel(model);
}

/**
 * The 2-D velocity MLP (src/core/models/mlp.ts) as ONNX: inputs x [B, dim] and t [B] float32,
 * output v [B, dim]. Weights are initializers named as in the checkpoint.
 */
export async function exportMlpOnnx(params: Record<string, Float32Array>, cfg: MlpConfig): Promise<Uint8Array> {
  const shapes = mlpParamShapes(cfg);
  checkWeights(params, shapes);
  await initEngine();
  // Weights baked in: batch-first lets onnxruntime pre-pack them (see mlpModel).
  const model = mlpModel(cfg, "batch-first");
  const args = (b: number) => [toParams(params, shapes), np.zeros([b, cfg.dim]), np.zeros([b])];
  return traceToOnnxBatched((p: Params, x: Array, t: Array) => model.apply(p, x, t, null), args, {
    inputNames: inputNames(shapes, ["x", "t"]),
    outputNames: ["v"],
    constLeaves: Object.keys(shapes).length,
    graphName: "flowmatch_mlp",
    batchInput: "t",
  });
}

/** Options of exportUnetOnnx. */
export interface UnetExportOptions {
  /**
   * Classifier-free guidance in the graph: an extra float32 scalar input w, output
   * v = v(x, t, null) + w (v(x, t, y) - v(x, t, null)) from one batch-2B network call.
   */
  guided?: boolean;
}

/**
 * The image UNet (src/core/models/unet.ts) as ONNX: inputs x [B, H, W, C] float32 (NHWC), t [B]
 * float32, y [B] int64 labels (numClasses = null class), w [] float32 when guided; output v [B, H, W, C].
 */
export async function exportUnetOnnx(
  params: Record<string, Float32Array>,
  cfg: UnetConfig,
  opts: UnetExportOptions = {},
): Promise<Uint8Array> {
  const shapes = unetParamShapes(cfg);
  checkWeights(params, shapes);
  await initEngine();
  const image = [cfg.height, cfg.width, cfg.inChannels];
  const data = (b: number) => [np.zeros([b, ...image]), np.zeros([b]), np.zeros([b], { dtype: np.int32 })];
  const apply = (p: Params, x: Array, t: Array, y: Array) => unetApply(p, x, t, y, cfg, "nchw");
  const traceOpts = { outputNames: ["v"], constLeaves: Object.keys(shapes).length, batchInput: "t" };
  let bytes: Uint8Array;
  if (opts.guided) {
    const args = (b: number) => [toParams(params, shapes), ...data(b), np.array(1, { dtype: np.float32 })];
    const model = { apply };
    const fn = (p: Params, x: Array, t: Array, y: Array, w: Array) => guidedVelocity(model, p, x, t, y, w, cfg.numClasses);
    bytes = await traceToOnnxBatched(fn, args, {
      ...traceOpts,
      inputNames: inputNames(shapes, ["x", "t", LABELS_INT32, "w"]),
      graphName: "flowmatch_unet_guided",
    });
  } else {
    const args = (b: number) => [toParams(params, shapes), ...data(b)];
    bytes = await traceToOnnxBatched(apply, args, {
      ...traceOpts,
      inputNames: inputNames(shapes, ["x", "t", LABELS_INT32]),
      graphName: "flowmatch_unet",
    });
  }
  return int64LabelInput(bytes);
}

/** Options of exportDivergenceOnnx: how many tangent inputs, and whether they form an exact trace. */
export interface DivergenceExportOptions {
  /** Number of tangent inputs e.0 .. e.{K-1}, each shaped like x. */
  tangents: number;
  /** Sum the K terms into one exact trace (basis tangents) instead of K Hutchinson estimates. */
  exact: boolean;
}

/**
 * A model's velocity with its divergence terms (core/likelihood.ts velocityAndDivergence, one jvp
 * per tangent) as ONNX, for log-likelihoods on onnxruntime. Inputs as the model's export plus the
 * tangents e.0 .. e.{K-1} (shaped like x); outputs v (like x) and div ([1, B] exact, [K, B] Hutchinson).
 */
export async function exportDivergenceOnnx(
  params: Record<string, Float32Array>,
  model: { kind: "mlp"; config: MlpConfig } | { kind: "unet"; config: UnetConfig },
  opts: DivergenceExportOptions,
): Promise<Uint8Array> {
  const shapes = model.kind === "mlp" ? mlpParamShapes(model.config) : unetParamShapes(model.config);
  checkWeights(params, shapes);
  await initEngine();
  const sample = model.kind === "mlp" ? [model.config.dim] : [model.config.height, model.config.width, model.config.inChannels];
  const unet = model.kind === "unet" ? model.config : null;
  const velocity = unet
    ? { apply: (p: Params, x: Array, t: Array, y: Array) => unetApply(p, x, t, y, unet, "nchw") }
    : mlpModel(model.config as MlpConfig, "batch-first");
  const tangentNames = Array.from({ length: opts.tangents }, (_, k) => `e.${k}`);
  const args = (b: number) => [
    toParams(params, shapes),
    np.zeros([b, ...sample]),
    np.zeros([b]),
    np.zeros([b], { dtype: np.int32 }),
    tangentNames.map(() => np.zeros([b, ...sample])),
  ];
  const fn = (p: Params, x: Array, t: Array, y: Array, e: Array[]) =>
    velocityAndDivergence(velocity, p, x, t, y, e, sample.length, opts.exact);
  const bytes = await traceToOnnxBatched(fn, args, {
    inputNames: inputNames(shapes, ["x", "t", LABELS_INT32, ...tangentNames]),
    outputNames: ["v", "div"],
    constLeaves: Object.keys(shapes).length,
    graphName: `flowmatch_${model.kind}_divergence`,
    batchInput: "t",
  });
  // The MLP ignores labels: its traced graph has an unused y input, which stays out of the interface.
  return unet ? int64LabelInput(bytes) : dropInput(bytes, LABELS_INT32);
}

function dropInput(bytes: Uint8Array, name: string): Uint8Array {
  const model = decodeOnnxModel(bytes);
  if (model.graph.node.some((n) => (n.input ?? []).includes(name))) throw new Error(`ONNX export: input ${name} is used by the graph`);
  model.graph.input = (model.graph.input ?? []).filter((v) => v.name !== name);
  return encodeOnnxModel(model);
}
