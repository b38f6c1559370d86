// Checkpoints: <dir>/ckpt.safetensors (weights; EMA weights under "ema.", optimizer state under "opt.")
// plus <dir>/ckpt.json (model config, step, and the sha256 of the safetensors bytes, so a config paired
// with someone else's weights is detected on load). The weights file also embeds the config in its
// metadata and is replaced by one atomic rename, so a run killed between the two writes still loads
// its newest weights instead of losing the last good checkpoint.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import { UserError } from "../core/errors.js";
import { writeFileAtomic } from "./atomic.js";
import { decodeSafetensors, encodeSafetensors, type HostTensor } from "./safetensors.js";

export const CHECKPOINT_FORMAT = "flowmatch-checkpoint";
export const CHECKPOINT_VERSION = 1;
export const WEIGHTS_FILE = "ckpt.safetensors";
export const CONFIG_FILE = "ckpt.json";

export interface CheckpointConfig {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_VERSION;
  /** Model family, e.g. "2d" or "image"; commands refuse checkpoints of another kind. */
  kind: string;
  step: number;
  /** sha256 (hex) of ckpt.safetensors; written by saveCheckpoint. */
  weightsSha256?: string;
  [key: string]: unknown;
}

export interface Checkpoint {
  config: CheckpointConfig;
  tensors: Record<string, HostTensor>;
  /** True when ckpt.json was missing and the config embedded in the weights file was used. */
  recovered?: boolean;
}

/** Prefixes of auxiliary tensors stored beside the weights. */
const EMA_PREFIX = "ema.";
const OPT_PREFIX = "opt.";
/** Training logs stored beside the weights (e.g. "log.loss"), never model parameters. */
const LOG_PREFIX = "log.";

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** "name[i] = value" for the first NaN or infinity in float tensors, or null when all are finite. */
export function firstNonFinite(tensors: Record<string, HostTensor>): string | null {
  for (const [name, t] of Object.entries(tensors)) {
    if (!(t.data instanceof Float32Array || t.data instanceof Float64Array)) continue;
    const d = t.data;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) return `${name}[${i}] = ${d[i]}`;
  }
  return null;
}

/**
 * Write the weights, then the config that names their hash; each file atomically. A checkpoint
 * holding a NaN or an infinity is refused, so the previous one on disk stays the last good one.
 */
export async function saveCheckpoint(dir: string, ckpt: Checkpoint): Promise<void> {
  const { config, tensors } = ckpt;
  const bad = firstNonFinite(tensors);
  if (bad !== null) {
    throw new UserError(`not writing the step-${config.step} checkpoint to ${dir}: it holds a non-finite value (${bad}); the checkpoint already there is kept`);
  }
  const embedded: CheckpointConfig = { ...config, format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION };
  delete embedded.weightsSha256;
  const bytes = encodeSafetensors(tensors, {
    format: CHECKPOINT_FORMAT,
    kind: config.kind,
    step: String(config.step),
    config: JSON.stringify(embedded),
  });
  const json: CheckpointConfig = { ...embedded, weightsSha256: sha256Hex(bytes) };
  await writeFileAtomic(join(dir, WEIGHTS_FILE), bytes);
  await writeFileAtomic(join(dir, CONFIG_FILE), JSON.stringify(json, null, 2) + "\n");
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Map a folder, a .safetensors path or a .json path to the pair of files. */
export async function checkpointFiles(pathOrDir: string): Promise<{ weightsPath: string; configPath: string }> {
  const ext = extname(pathOrDir).toLowerCase();
  if (ext === ".safetensors" || ext === ".json") {
    const stem = join(dirname(pathOrDir), basename(pathOrDir, extname(pathOrDir)));
    return { weightsPath: stem + ".safetensors", configPath: stem + ".json" };
  }
  if (!(await isDirectory(pathOrDir))) {
    throw new UserError(
      `no checkpoint at ${pathOrDir}: it is not a folder, a .safetensors file or a .json file; run training first (its --out folder holds ${CONFIG_FILE} and ${WEIGHTS_FILE}) and pass that folder as --ckpt`,
    );
  }
  return { weightsPath: join(pathOrDir, WEIGHTS_FILE), configPath: join(pathOrDir, CONFIG_FILE) };
}

async function readCheckpointFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new UserError(`checkpoint ${what} ${path} does not exist; run training first to create it, or pass the folder of an existing checkpoint as --ckpt`);
    throw new UserError(`cannot read checkpoint ${what} ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function parseConfig(text: string, configPath: string): CheckpointConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UserError(`checkpoint config ${configPath} is not valid JSON (${err instanceof Error ? err.message : String(err)}); re-run training to write it again`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new UserError(`checkpoint config ${configPath} is not a JSON object; re-run training to write it again`);
  const cfg = raw as Record<string, unknown>;
  if (cfg.format !== CHECKPOINT_FORMAT) {
    throw new UserError(`${configPath} is not a flowmatch checkpoint config (format is ${JSON.stringify(cfg.format)}, expected "${CHECKPOINT_FORMAT}")`);
  }
  if (cfg.version !== CHECKPOINT_VERSION) {
    throw new UserError(`${configPath} has checkpoint version ${JSON.stringify(cfg.version)}, but this flowmatch reads version ${CHECKPOINT_VERSION}; use the flowmatch that wrote it or re-run training`);
  }
  if (typeof cfg.kind !== "string") throw new UserError(`${configPath} has no model "kind"; re-run training to write it again`);
  if (typeof cfg.step !== "number" || !Number.isInteger(cfg.step) || cfg.step < 0) throw new UserError(`${configPath} has no valid "step"; re-run training to write it again`);
  if (cfg.weightsSha256 !== undefined && typeof cfg.weightsSha256 !== "string") throw new UserError(`${configPath} has a malformed "weightsSha256"`);
  return cfg as CheckpointConfig;
}

/**
 * Load a checkpoint from its folder, its .safetensors path or its .json path. With `expect.kind`, a
 * checkpoint of another model kind is refused; `expect.command` names the command in that message.
 */
export async function loadCheckpoint(pathOrDir: string, expect?: { kind?: string; command?: string }): Promise<Checkpoint> {
  const { weightsPath, configPath } = await checkpointFiles(pathOrDir);
  if (!existsSync(configPath) && existsSync(weightsPath)) return loadEmbedded(weightsPath, configPath, expect);
  const config = parseConfig((await readCheckpointFile(configPath, "config")).toString("utf8"), configPath);
  if (expect?.kind !== undefined && config.kind !== expect.kind) {
    throw new UserError(
      `checkpoint ${configPath} is a '${config.kind}' model; ${expect.command ?? "this command"} needs a '${expect.kind}' model; pass a checkpoint trained for '${expect.kind}'`,
    );
  }
  const bytes = await readCheckpointFile(weightsPath, "weights");
  if (config.weightsSha256 !== undefined) {
    const actual = sha256Hex(bytes);
    if (actual !== config.weightsSha256) {
      const decoded = decodeSafetensors(bytes, `checkpoint ${weightsPath}`);
      const newer = interruptedSave(config, decoded.metadata.config);
      if (newer) return { config: newer, tensors: assertFinite(decoded.tensors, weightsPath) };
      throw new UserError(
        `checkpoint weights ${weightsPath} do not belong to this config ${configPath} (sha256 ${actual.slice(0, 12)}… vs recorded ${config.weightsSha256.slice(0, 12)}…); the files were mixed up; re-run training or restore both files together`,
      );
    }
  }
  const { tensors } = decodeSafetensors(bytes, `checkpoint ${weightsPath}`);
  return { config, tensors: assertFinite(tensors, weightsPath) };
}

/**
 * ckpt.json is missing (a first save killed between its two writes, or a lost file): the weights file
 * embeds the config it was saved with, so load that instead.
 */
async function loadEmbedded(weightsPath: string, configPath: string, expect?: { kind?: string; command?: string }): Promise<Checkpoint> {
  const decoded = decodeSafetensors(await readCheckpointFile(weightsPath, "weights"), `checkpoint ${weightsPath}`);
  const text = decoded.metadata.config;
  if (text === undefined) {
    throw new UserError(`checkpoint config ${configPath} does not exist and ${weightsPath} embeds none; restore ${CONFIG_FILE} or re-run training`);
  }
  const config = parseConfig(text, `${weightsPath} (embedded config)`);
  if (expect?.kind !== undefined && config.kind !== expect.kind) {
    throw new UserError(`checkpoint ${weightsPath} is a '${config.kind}' model; ${expect.command ?? "this command"} needs a '${expect.kind}' model; pass a checkpoint trained for '${expect.kind}'`);
  }
  return { config, tensors: assertFinite(decoded.tensors, weightsPath), recovered: true };
}

/** NaN or infinite weights sample to NaN without any error; refuse them at load, naming the tensor. */
function assertFinite(tensors: Record<string, HostTensor>, source: string): Record<string, HostTensor> {
  for (const [name, t] of Object.entries(tensors)) {
    if (!(t.data instanceof Float32Array || t.data instanceof Float64Array)) continue;
    const i = t.data.findIndex((v) => !Number.isFinite(v));
    if (i >= 0) {
      throw new UserError(`checkpoint ${source}: tensor "${name}" has a non-finite value (${t.data[i]}) at index ${i}; the weights are corrupt or training diverged; restore a good checkpoint or re-run training`);
    }
  }
  return tensors;
}

/** One setting that defines what a checkpoint's weights are, as the flag that sets it. */
export interface Setting {
  flag: string;
  value: string | number | boolean | null;
}

/**
 * A run may only continue a checkpoint whose weights mean the same thing: every setting of `stored`
 * (read from the checkpoint) must equal the same flag in `next` (this run), else refuse naming them.
 */
export function assertSameSetup(stored: Setting[], next: Setting[], where: string): void {
  const wanted = new Map(next.map((s) => [s.flag, s.value]));
  const show = (v: Setting["value"] | undefined) => (v === null || v === undefined ? "none" : String(v));
  const diffs = stored
    .filter((s) => (wanted.get(s.flag) ?? null) !== s.value)
    .map((s) => `${s.flag} ${show(s.value)} (you passed ${show(wanted.get(s.flag))})`);
  if (diffs.length > 0) {
    throw new UserError(`cannot resume ${where}: it was trained with ${diffs.join(", ")}; pass the same flags, another --out, or --force to start over`);
  }
}

/** Fields that change from one save of a run to the next (settings a resume may change are recorded per segment). */
const PER_SAVE_FIELDS = new Set(["step", "weightsSha256", "losses", "train", "segments"]);

/**
 * A save killed after the weights were renamed into place but before the config was: the weights
 * embed the config of the same run at a later step. Returns that config, or null if the weights
 * belong to another run (or carry no config).
 */
function interruptedSave(json: CheckpointConfig, embeddedText: string | undefined): CheckpointConfig | null {
  if (embeddedText === undefined) return null;
  let embedded: CheckpointConfig;
  try {
    embedded = JSON.parse(embeddedText) as CheckpointConfig;
  } catch {
    return null;
  }
  const stable = (c: CheckpointConfig) =>
    JSON.stringify(Object.fromEntries(Object.entries(c).filter(([k]) => !PER_SAVE_FIELDS.has(k)).sort(([a], [b]) => a.localeCompare(b))));
  if (typeof embedded.step !== "number" || embedded.step < json.step || stable(embedded) !== stable(json)) return null;
  return embedded;
}

const fmtShape = (shape: readonly number[]): string => `[${shape.join(", ")}]`;
const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Listing more than this many problems buries the hint; the rest are counted. */
const MAX_LISTED = 20;

/**
 * Verify the checkpoint holds exactly the expected weights with exactly the expected shapes. Optimizer
 * tensors ("opt.*") are ignored; EMA tensors ("ema.<name>"), when present, must match their weight.
 * `hint` overrides the guess at which flags differ.
 */
export function checkParams(expected: Record<string, number[]>, tensors: Record<string, HostTensor>, source: string, hint?: string): void {
  const missing: string[] = [];
  const extra: string[] = [];
  const misshaped: string[] = [];
  for (const [name, shape] of Object.entries(expected)) {
    const t = tensors[name];
    if (!Object.prototype.hasOwnProperty.call(tensors, name) || t === undefined) missing.push(`${name} (expected ${fmtShape(shape)})`);
    else if (!sameShape(t.shape, shape)) misshaped.push(`${name} is ${fmtShape(t.shape)} in the checkpoint, the model needs ${fmtShape(shape)}`);
  }
  for (const [key, t] of Object.entries(tensors)) {
    if (key.startsWith(OPT_PREFIX) || key.startsWith(LOG_PREFIX)) continue;
    const name = key.startsWith(EMA_PREFIX) ? key.slice(EMA_PREFIX.length) : key;
    const want = Object.prototype.hasOwnProperty.call(expected, name) ? expected[name] : undefined;
    if (want === undefined) extra.push(`${key} ${fmtShape(t.shape)}`);
    else if (key !== name && !sameShape(t.shape, want)) misshaped.push(`${key} is ${fmtShape(t.shape)} in the checkpoint, the model needs ${fmtShape(want)}`);
  }
  if (missing.length + extra.length + misshaped.length === 0) return;

  const lines = [
    ...missing.map((s) => `  missing: ${s}`),
    ...extra.map((s) => `  unexpected: ${s}`),
    ...misshaped.map((s) => `  wrong shape: ${s}`),
  ];
  const listed = lines.length > MAX_LISTED ? [...lines.slice(0, MAX_LISTED), `  … and ${lines.length - MAX_LISTED} more`] : lines;
  // Missing/extra names usually mean a different layer count; wrong shapes a different width or input size.
  const guesses: string[] = [];
  if (missing.length + extra.length > 0) guesses.push("the number of layers (--depth)");
  if (misshaped.length > 0) guesses.push("layer sizes (--hidden, --time-emb-dim, or the data dimension)");
  const advice = hint ?? `The model flags probably differ from those used in training: ${guesses.join("; ")}. Pass the same flags as in training, or a checkpoint trained with these.`;
  throw new UserError(`${source} does not fit the model:\n${listed.join("\n")}\n${advice}`);
}
