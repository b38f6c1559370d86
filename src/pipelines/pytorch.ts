// Moving a run to PyTorch and back. `exportPytorch` writes a self-contained package (model.py,
// train.py, config.json, weights.safetensors in PyTorch's layouts, data.safetensors) that continues
// training under torchrun with the same loss, path, time sampler, Adam state and EMA; train.py saves
// packages of the same form. `importPytorch` turns such a package, or a user's own state dict for the
// same architecture, into a flowmatch checkpoint (sample, compare, reflow, export to ONNX, playground).
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { UserError } from "../core/errors.js";
import { DEFAULT_ADAM, type HostParams } from "../core/optim.js";
import { Rng } from "../core/rng.js";
import { mlpParamShapes, type MlpConfig } from "../core/models/mlp.js";
import { unetParamShapes, type UnetConfig } from "../core/models/unet.js";
import { modelFamily } from "../core/models/registry.js";
import { sampleToy, parseToyDataset } from "../data/toy2d.js";
import { loadImageDataset, recordedImageTransforms } from "../data/images.js";
import { writeFileAtomic } from "../io/atomic.js";
import {
  checkParams,
  firstNonFinite,
  loadCheckpoint,
  saveCheckpoint,
  CONFIG_FILE,
  WEIGHTS_FILE,
  type CheckpointConfig,
} from "../io/checkpoint.js";
import { decodeSafetensors, encodeSafetensors, type HostTensor } from "../io/safetensors.js";
import { paramsFromTorch, paramsToTorch, type TorchModelKind } from "../io/pytorch/layout.js";
import { stateToTensors, tensorsToState, type TrainerHostState } from "./state.js";

export const PACKAGE_FORMAT = "flowmatch-pytorch";
export const PACKAGE_VERSION = 1;
export const PACKAGE_CONFIG = "config.json";
export const PACKAGE_WEIGHTS = "weights.safetensors";
export const PACKAGE_DATA = "data.safetensors";
/** Every file a package holds; an existing folder holding any of them is replaced only with --force. */
export const PACKAGE_FILES = [PACKAGE_CONFIG, PACKAGE_WEIGHTS, PACKAGE_DATA, "model.py", "train.py"] as const;
/** Points of a 2-D dataset written for train.py to draw batches from (flowmatch draws fresh ones each step). */
export const DEFAULT_2D_DATA_SIZE = 200_000;

/** The python sources shipped with flowmatch (pytorch/ at the package root; three levels above this module in src/ and dist/). */
export function pythonSourceDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "pytorch");
}

/** config.json of a package. */
export interface PackageConfig {
  format: typeof PACKAGE_FORMAT;
  version: typeof PACKAGE_VERSION;
  kind: TorchModelKind;
  /** Constructor arguments of the module in model.py (the flowmatch checkpoint's "model" section). */
  model: MlpConfig | UnetConfig;
  /** Optimizer steps taken (applied or skipped), as flowmatch counts them. */
  step: number;
  /** What train.py needs to continue exactly as flowmatch would. */
  training: {
    path: string;
    timeSampler: string;
    emaDecay: number;
    lr: number;
    /** The rate's schedule ("constant" or "cosine", src/core/lrSchedule.ts) and its warm-up steps; train.py follows it. */
    lrSchedule: string;
    warmup: number;
    batchSize: number;
    seed: number;
    adam: { beta1: number; beta2: number; eps: number; weightDecay: number; clipNorm: number };
    coupling?: string;
    labelDropout?: number;
    /** Image runs: each image mirrored left-right with probability 1/2 (after the coupling, as flowmatch). */
    horizontalFlip?: boolean;
  };
  /** Training data for train.py: file relative to the package folder (or absolute), and its row count. */
  data: { file: string; n: number } | null;
  /** Why train.py cannot continue this run (e.g. a reflow student, whose pairs are not exported). */
  notContinuable?: string;
  /** The flowmatch checkpoint config the run came from (its weightsSha256 dropped); import restores it. */
  flowmatch: CheckpointConfig;
}

const packageKind = (kind: string): TorchModelKind | null => (kind === "2d" ? "mlp" : kind === "image" ? "unet" : null);
const flowmatchKind = (kind: TorchModelKind): "2d" | "image" => (kind === "mlp" ? "2d" : "image");

function fmShapes(kind: TorchModelKind, model: MlpConfig | UnetConfig): Record<string, number[]> {
  return kind === "mlp" ? mlpParamShapes(model as MlpConfig) : unetParamShapes(model as UnetConfig);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Refuse to replace what a folder already holds unless asked (never touches other files). */
function assertReplaceable(out: string, files: readonly string[], force: boolean, what: string): void {
  if (existsSync(out) && !statSync(out).isDirectory()) throw new UserError(`--out ${out} is a file; pass a folder for the ${what}`);
  const present = files.filter((f) => existsSync(join(out, f)));
  if (present.length > 0 && !force)
    throw new UserError(`${out} already holds ${present.join(", ")}; pass another --out, or --force to replace them`);
}

export interface ExportPytorchOptions {
  ckpt: string;
  out: string;
  force?: boolean;
  /** Points drawn from a 2-D dataset for data.safetensors (default DEFAULT_2D_DATA_SIZE). */
  dataSize?: number;
  log?: (line: string) => void;
}

/** Why train.py cannot continue this run as flowmatch would, or undefined when it can. */
function notContinuable(config: CheckpointConfig, train: Record<string, unknown>): string | undefined {
  if (config.reflow !== undefined)
    return "this run is a reflow student, trained on pairs drawn from its teacher, which the package does not hold; continue it with flowmatch reflow --resume";
  const resume = config.kind === "image" ? "train-image" : "train2d";
  if (train.coupling !== undefined && train.coupling !== "independent" && train.coupling !== "ot")
    return `this run uses --coupling ${String(train.coupling)}, which train.py does not implement (it does independent and ot); continue it with flowmatch ${resume} --resume`;
  if (typeof train.bridgeSigma === "number" && train.bridgeSigma > 0)
    return `this run uses --bridge-sigma ${train.bridgeSigma}, which train.py does not implement; continue it with flowmatch ${resume} --resume`;
  return undefined;
}

export async function exportPytorch(o: ExportPytorchOptions): Promise<{ files: string[]; config: PackageConfig }> {
  const log = o.log ?? (() => {});
  assertReplaceable(o.out, PACKAGE_FILES, o.force ?? false, "PyTorch package");
  const { config, tensors } = await loadCheckpoint(o.ckpt);
  const kind = packageKind(config.kind);
  if (kind === null) throw new UserError(`cannot export a '${config.kind}' checkpoint to PyTorch; export supports '2d' and 'image' models`);
  const model = config.model as MlpConfig | UnetConfig | undefined;
  if (!isRecord(model)) throw new UserError(`${o.ckpt}: checkpoint config has no valid "model" section; re-run training`);
  const shapes = fmShapes(kind, model);
  const family = modelFamily(config.kind);
  checkParams(shapes, tensors, o.ckpt, family.mismatchHint ?? family.shapeFlags);
  const state = tensorsToState(tensors, o.ckpt);
  const train = isRecord(config.train) ? config.train : {};
  const num = (v: unknown, d: number) => (typeof v === "number" ? v : d);
  const str = (v: unknown, d: string) => (typeof v === "string" ? v : d);

  // The data train.py draws batches from, in PyTorch's layout.
  const dataTensors: Record<string, HostTensor> = {};
  let rows = 0;
  if (kind === "mlp") {
    const m = model as MlpConfig;
    rows = o.dataSize ?? DEFAULT_2D_DATA_SIZE;
    const dataset = parseToyDataset(String(config.dataset));
    dataTensors.x = { dtype: "F32", shape: [rows, m.dim], data: sampleToy(dataset, rows, new Rng(num(train.seed, 0) + 0x5eed)) };
  } else {
    const m = model as UnetConfig;
    const limit = num(train.limit, 0);
    const data = await loadImageDataset(String(config.dataset), {
      split: "train",
      limit: limit > 0 ? limit : undefined,
      onWarn: log,
      ...recordedImageTransforms(config.train),
    });
    if (data.height !== m.height || data.width !== m.width || data.channels !== m.inChannels || data.numClasses !== m.numClasses) {
      throw new UserError(
        `dataset ${String(config.dataset)} is now ${data.height}x${data.width}x${data.channels} with ${data.numClasses} classes, the model was trained on ${m.height}x${m.width}x${m.inChannels} with ${m.numClasses}; restore the training data`,
      );
    }
    rows = data.n;
    const per = data.height * data.width * data.channels;
    const nchw = new Float32Array(data.images.length);
    const hw = data.height * data.width;
    for (let i = 0; i < data.n; i++)
      for (let p = 0; p < hw; p++)
        for (let c = 0; c < data.channels; c++) nchw[i * per + c * hw + p] = data.images[i * per + p * data.channels + c];
    dataTensors.x = { dtype: "F32", shape: [data.n, data.channels, data.height, data.width], data: nchw };
    dataTensors.y = { dtype: "I64", shape: [data.n], data: BigInt64Array.from(data.labels, (l) => BigInt(l)) };
  }

  const flowmatch: CheckpointConfig = { ...config };
  delete flowmatch.weightsSha256;
  const pkg: PackageConfig = {
    format: PACKAGE_FORMAT,
    version: PACKAGE_VERSION,
    kind,
    model,
    step: config.step,
    training: {
      path: str(config.path, "straight"),
      timeSampler: str(train.timeSampler, "uniform"),
      emaDecay: num(train.emaDecay, 0.999),
      lr: num(train.lr, DEFAULT_ADAM.lr),
      lrSchedule: str(train.lrSchedule, "constant"),
      warmup: num(train.warmup, 0),
      batchSize: num(train.batchSize, 256),
      seed: num(train.seed, 0),
      adam: {
        beta1: DEFAULT_ADAM.beta1,
        beta2: DEFAULT_ADAM.beta2,
        eps: DEFAULT_ADAM.eps,
        weightDecay: DEFAULT_ADAM.weightDecay,
        clipNorm: DEFAULT_ADAM.clipNorm,
      },
      // "ot": train.py pairs noise with data by exact minibatch OT (within each label for images), as flowmatch does.
      coupling: str(train.coupling, "independent"),
      ...(kind === "mlp" ? {} : { labelDropout: num(train.labelDropout, 0.1) }),
      ...(train.horizontalFlip === true ? { horizontalFlip: true } : {}),
    },
    data: { file: PACKAGE_DATA, n: rows },
    ...(notContinuable(config, train) === undefined ? {} : { notContinuable: notContinuable(config, train) }),
    flowmatch,
  };
  const torchState: TrainerHostState = {
    params: paramsToTorch(kind, state.params),
    ema: paramsToTorch(kind, state.ema),
    ...(state.m && state.v ? { m: paramsToTorch(kind, state.m), v: paramsToTorch(kind, state.v) } : {}),
    losses: state.losses,
    skipped: state.skipped,
  };
  const files: string[] = [];
  const write = async (name: string, data: Uint8Array | string) => {
    await writeFileAtomic(join(o.out, name), data);
    files.push(join(o.out, name));
  };
  await write(PACKAGE_DATA, encodeSafetensors(dataTensors));
  await write(PACKAGE_WEIGHTS, encodeSafetensors(stateToTensors(torchState), { format: PACKAGE_FORMAT }));
  for (const f of ["model.py", "train.py"]) await write(f, readFileSync(join(pythonSourceDir(), f)));
  // Last: a folder with config.json is a complete package.
  await write(PACKAGE_CONFIG, JSON.stringify(pkg, null, 2) + "\n");
  return { files, config: pkg };
}

function readJson(path: string, what: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new UserError(
      `cannot read ${what} ${path}: ${err instanceof Error ? err.message : String(err)}; pass the config.json of a package written by flowmatch export --format pytorch`,
    );
  }
  if (!isRecord(raw)) throw new UserError(`${what} ${path} is not a JSON object`);
  return raw;
}

/** The architecture and run a state dict belongs to: a package's config.json, or a flowmatch checkpoint's. */
async function readArchitecture(
  path: string,
): Promise<{ kind: TorchModelKind; model: MlpConfig | UnetConfig; flowmatch: CheckpointConfig; step: number; fromPackage: boolean }> {
  const isDir = existsSync(path) && statSync(path).isDirectory();
  const pkgPath = isDir ? join(path, PACKAGE_CONFIG) : path;
  if (existsSync(pkgPath) && basename(pkgPath) !== CONFIG_FILE) {
    const cfg = readJson(pkgPath, "package config");
    if (cfg.format !== PACKAGE_FORMAT)
      throw new UserError(
        `${pkgPath} is not a flowmatch PyTorch package config (format ${JSON.stringify(cfg.format)}); pass the package folder or its config.json`,
      );
    if (cfg.version !== PACKAGE_VERSION)
      throw new UserError(`${pkgPath} is package version ${JSON.stringify(cfg.version)}, this flowmatch reads ${PACKAGE_VERSION}`);
    const kind = cfg.kind === "mlp" || cfg.kind === "unet" ? cfg.kind : null;
    if (kind === null || !isRecord(cfg.model) || !isRecord(cfg.flowmatch) || typeof cfg.step !== "number") {
      throw new UserError(
        `${pkgPath} lacks a valid "kind", "model", "flowmatch" or "step"; export the run again with flowmatch export --format pytorch`,
      );
    }
    return {
      kind,
      model: cfg.model as unknown as MlpConfig | UnetConfig,
      flowmatch: cfg.flowmatch as CheckpointConfig,
      step: cfg.step,
      fromPackage: true,
    };
  }
  // A flowmatch checkpoint (folder, ckpt.json or ckpt.safetensors) for the same architecture.
  const { config } = await loadCheckpoint(path);
  const kind = packageKind(config.kind);
  if (kind === null || !isRecord(config.model))
    throw new UserError(`${path} is a '${config.kind}' checkpoint; import needs a '2d' or 'image' model's config`);
  return { kind, model: config.model as unknown as MlpConfig | UnetConfig, flowmatch: config, step: config.step, fromPackage: false };
}

/** A .pt state dict as safetensors, through python3 with torch (FLOWMATCH_PYTHON picks the interpreter). */
function ptToSafetensors(file: string): Uint8Array {
  const python = process.env.FLOWMATCH_PYTHON ?? "python3";
  const dir = mkdtempSync(join(tmpdir(), "flowmatch-pt-"));
  try {
    const dst = join(dir, "state.safetensors");
    const r = spawnSync(python, [join(pythonSourceDir(), "model.py"), "to-safetensors", file, dst], { encoding: "utf8" });
    if (r.error || r.status !== 0) {
      const why = r.error?.message ?? r.stderr.trim().split("\n").pop() ?? `exit ${r.status}`;
      throw new UserError(
        `cannot read ${file}: reading a .pt file needs ${python} with torch (${why}); install python3-torch, or save the state dict as .safetensors`,
      );
    }
    return readFileSync(dst);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ImportPytorchOptions {
  /** A package folder (config.json + weights.safetensors), or a state dict file (.safetensors, .pt). */
  from: string;
  out: string;
  /** The architecture for a bare state dict: a package folder/config.json, or a flowmatch checkpoint. */
  config?: string;
  force?: boolean;
}

export async function importPytorch(o: ImportPytorchOptions): Promise<{ config: CheckpointConfig; step: number; hasOptimizer: boolean }> {
  const fromIsDir = existsSync(o.from) && statSync(o.from).isDirectory();
  const weightsPath = fromIsDir ? join(o.from, PACKAGE_WEIGHTS) : o.from;
  if (!existsSync(weightsPath)) {
    throw new UserError(
      `${weightsPath} does not exist; pass a package folder written by flowmatch export --format pytorch (or by its train.py), or a .safetensors/.pt state dict with --config`,
    );
  }
  const archFrom = o.config ?? (fromIsDir ? o.from : undefined);
  if (archFrom === undefined)
    throw new UserError(
      `${o.from} is a bare state dict: pass --config with the package (or flowmatch checkpoint) whose architecture it has`,
    );
  const arch = await readArchitecture(archFrom);
  assertReplaceable(o.out, [CONFIG_FILE, WEIGHTS_FILE], o.force ?? false, "flowmatch checkpoint");

  const ext = extname(weightsPath).toLowerCase();
  const bytes = ext === ".pt" || ext === ".pth" ? ptToSafetensors(weightsPath) : readFileSync(weightsPath);
  const fix = `pass the state dict of the model in ${archFrom}, or --config with the architecture it was trained with`;
  const { tensors: raw } = decodeSafetensors(
    bytes,
    weightsPath,
    "write it again (torch.save the state dict, or a train.py checkpoint), or restore it from a copy",
  );
  const groups: Record<"params" | "ema" | "m" | "v", HostParams> = { params: {}, ema: {}, m: {}, v: {} };
  let losses: number[] | undefined;
  let skipped: number[] | undefined;
  for (const [key0, t] of Object.entries(raw)) {
    // DistributedDataParallel's state_dict prefixes every name with "module.".
    const key = key0.replace(/^((?:ema\.|opt\.[mv]\.)?)module\./, "$1");
    if (key === "log.loss" && t.data instanceof Float32Array) losses = Array.from(t.data);
    else if (key === "log.skipped") skipped = Array.from(t.data as ArrayLike<number | bigint>, Number);
    else if (key.startsWith("log.")) continue;
    else {
      if (!(t.data instanceof Float32Array))
        throw new UserError(
          `${weightsPath}: tensor "${key}" is ${t.dtype}; flowmatch models are float32: save the state dict with .float()`,
        );
      const value = { shape: t.shape, data: t.data };
      if (key.startsWith("ema.")) groups.ema[key.slice(4)] = value;
      else if (key.startsWith("opt.m.")) groups.m[key.slice(6)] = value;
      else if (key.startsWith("opt.v.")) groups.v[key.slice(6)] = value;
      else groups.params[key] = value;
    }
  }
  const bad = firstNonFinite(raw);
  if (bad !== null)
    throw new UserError(
      `${weightsPath}: tensor ${bad} is not finite; the weights are corrupt or training diverged: import an earlier checkpoint`,
    );
  const shapes = fmShapes(arch.kind, arch.model);
  const convert = (p: HostParams, what: string) =>
    paramsFromTorch(arch.kind, p, shapes, what === "" ? weightsPath : `${weightsPath} (${what})`, fix);
  const params = convert(groups.params, "");
  const hasEma = Object.keys(groups.ema).length > 0;
  // A package folder continues its run: same runId, its step, Adam state, losses and segments. A bare
  // state dict is new weights for the architecture: step 0, a new runId, weights (and EMA) only.
  const isPackage = fromIsDir && arch.fromPackage;
  const hasOpt = isPackage && Object.keys(groups.m).length > 0 && Object.keys(groups.v).length > 0;
  const state: TrainerHostState = {
    params,
    ema: hasEma ? convert(groups.ema, "EMA, ema.*") : params,
    ...(hasOpt ? { m: convert(groups.m, "Adam first moments, opt.m.*"), v: convert(groups.v, "Adam second moments, opt.v.*") } : {}),
    ...(isPackage && losses ? { losses } : {}),
    ...(isPackage && skipped ? { skipped } : {}),
  };
  const config: CheckpointConfig = {
    ...arch.flowmatch,
    kind: flowmatchKind(arch.kind),
    model: arch.model,
    step: isPackage ? arch.step : 0,
  };
  delete config.weightsSha256;
  if (!isPackage) {
    config.runId = randomUUID();
    delete config.segments;
  }
  await saveCheckpoint(o.out, { config, tensors: stateToTensors(state) });
  return { config, step: config.step, hasOptimizer: hasOpt };
}
