// What a checkpoint is, from bytes alone: the file names, the tensor layout, the config rules and the
// checks that tie a config to its weights. No file system here, so the Node loader (io/checkpoint.ts,
// which reads paths) and the browser (web/checkpointFiles.ts, which gets picked files) apply the
// same rules. Layout: ckpt.safetensors holds the weights (EMA weights under "ema.", optimizer state
// under "opt.", training logs under "log.") and embeds the config in its metadata; ckpt.json holds
// the config plus the sha256 of the weights bytes, so a config paired with other weights is caught.
import { UserError } from "../core/errors.js";
import type { ShapeFlags } from "../core/models/family.js";
import { decodeSafetensors, encodeSafetensors, type HostTensor } from "./safetensors.js";

/** The "format" every ckpt.json and embedded config carries; anything else is not a flowmatch checkpoint. */
export const CHECKPOINT_FORMAT = "flowmatch-checkpoint";
/** The checkpoint layout version this flowmatch writes and reads; other versions are refused with a message. */
export const CHECKPOINT_VERSION = 1;
/** Name of the weights file in a checkpoint folder (safetensors, with the config embedded in its metadata). */
export const WEIGHTS_FILE = "ckpt.safetensors";
/** Name of the config file in a checkpoint folder (JSON, with the sha256 of the weights file). */
export const CONFIG_FILE = "ckpt.json";

/** Tensor-name prefixes of ckpt.safetensors; a name with none of them is a model weight. */
export const TENSOR_PREFIX = {
  ema: "ema.",
  /** Every optimizer tensor; Adam's moments are "opt.m.<name>" and "opt.v.<name>". */
  opt: "opt.",
  adamM: "opt.m.",
  adamV: "opt.v.",
  /** Training logs, never model parameters. */
  log: "log.",
} as const;
/** Per-step training loss (F32) and the steps skipped for a non-finite loss or gradient (I32). */
export const LOSS_LOG = "log.loss";
export const SKIPPED_LOG = "log.skipped";

/**
 * A checkpoint's config (ckpt.json): format, version, model kind and step, plus what the kind's pipeline records
 * (model config, dataset, training settings).
 */
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

/** A checkpoint in memory: its config and every tensor of the weights file (weights, EMA, optimizer state, logs) by name. */
export interface Checkpoint {
  config: CheckpointConfig;
  tensors: Record<string, HostTensor>;
  /** True when ckpt.json was missing and the config embedded in the weights file was used. */
  recovered?: boolean;
  /**
   * True when the weights were a later save of the run than ckpt.json (a save killed between its two
   * writes): their embedded config was used.
   */
  newerThanConfig?: boolean;
}

/** sha256 (hex) with Web Crypto (Node 20+, and browsers in secure contexts); null where it is missing. */
export async function sha256Hex(bytes: Uint8Array): Promise<string | null> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return null;
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
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
 * The two files of a checkpoint as bytes: the weights (embedding the config) and ckpt.json naming
 * their sha256. A checkpoint holding a NaN or an infinity is refused, so the one already saved stays
 * the last good one; `where` names the destination in that message.
 */
export async function encodeCheckpoint(ckpt: Checkpoint, where: string): Promise<{ weights: Uint8Array; configText: string }> {
  const { config, tensors } = ckpt;
  const bad = firstNonFinite(tensors);
  if (bad !== null) {
    throw new UserError(
      `not writing the step-${config.step} checkpoint to ${where}: ` +
        `it holds a non-finite value (${bad}); the checkpoint already there is kept`,
    );
  }
  const embedded: CheckpointConfig = { ...config, format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION };
  delete embedded.weightsSha256;
  const weights = encodeSafetensors(tensors, {
    format: CHECKPOINT_FORMAT,
    kind: config.kind,
    step: String(config.step),
    config: JSON.stringify(embedded),
  });
  const sha = await sha256Hex(weights);
  if (sha === null) throw new Error("saving a checkpoint needs Web Crypto (crypto.subtle)");
  const json: CheckpointConfig = { ...embedded, weightsSha256: sha };
  return { weights, configText: JSON.stringify(json, null, 2) + "\n" };
}

/** How messages name the two files and what they advise; the CLI and the page word these differently. */
export interface CheckpointSource {
  /** The weights file, e.g. its path. */
  weights: string;
  /** The config file, e.g. its path. */
  config: string;
  /** Advice for a file that is broken, e.g. "re-run training to write it again". */
  rewrite: string;
  /** Advice when ckpt.json is absent and the weights embed no config. */
  missingConfig: string;
  /** Advice when the weights do not belong to the config. */
  mixedUp: string;
}

/** What a reader of checkpoints expects: the model kind it can use, and the command to name when refusing another. */
export interface ExpectKind {
  /** Refuse a checkpoint of another model kind. */
  kind?: string;
  /** The command named in that message. */
  command?: string;
}

/** Parse and validate a checkpoint config (ckpt.json, or the copy the weights embed); `source` names it in messages. */
export function parseCheckpointConfig(text: string, source: string, rewrite: string): CheckpointConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UserError(`checkpoint config ${source} is not valid JSON (${err instanceof Error ? err.message : String(err)}); ${rewrite}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new UserError(`checkpoint config ${source} is not a JSON object; ${rewrite}`);
  const cfg = raw as Record<string, unknown>;
  if (cfg.format !== CHECKPOINT_FORMAT) {
    throw new UserError(
      `${source} is not a flowmatch checkpoint config ` +
        `(its "format" is ${JSON.stringify(cfg.format)}, expected "${CHECKPOINT_FORMAT}"); ${rewrite}`,
    );
  }
  if (cfg.version !== CHECKPOINT_VERSION) {
    throw new UserError(
      `${source} has checkpoint version ${JSON.stringify(cfg.version)}, but this flowmatch reads version ${CHECKPOINT_VERSION}; ` +
        `use the flowmatch that wrote it or re-run training`,
    );
  }
  if (typeof cfg.kind !== "string") throw new UserError(`${source} has no model "kind"; ${rewrite}`);
  if (typeof cfg.step !== "number" || !Number.isInteger(cfg.step) || cfg.step < 0)
    throw new UserError(`${source} has no valid "step"; ${rewrite}`);
  if (cfg.weightsSha256 !== undefined && typeof cfg.weightsSha256 !== "string")
    throw new UserError(`${source} has a malformed "weightsSha256"; ${rewrite}`);
  return cfg as CheckpointConfig;
}

/** Refuse a checkpoint of another model kind than the command needs. */
export function assertKind(config: CheckpointConfig, source: string, expect: ExpectKind | undefined): void {
  if (expect?.kind !== undefined && config.kind !== expect.kind) {
    throw new UserError(
      `checkpoint ${source} is a '${config.kind}' model; ${expect.command ?? "this command"} needs a '${expect.kind}' model; ` +
        `pass a checkpoint trained for '${expect.kind}'`,
    );
  }
}

/**
 * Read a checkpoint from its bytes: the weights and ckpt.json's text (null when there is none; the
 * config the weights embed is used then). Checks, in order: the config, its kind, the recorded sha256
 * (a mismatch is accepted only as an interrupted save: the weights embed a later config of the same
 * run), the safetensors structure, and that every weight is finite.
 */
export async function parseCheckpoint(
  input: { weights: Uint8Array; configText: string | null },
  source: CheckpointSource,
  expect?: ExpectKind,
): Promise<Checkpoint> {
  const decode = () => decodeSafetensors(input.weights, `checkpoint ${source.weights}`, source.rewrite);
  if (input.configText === null) {
    const decoded = decode();
    const text = decoded.metadata.config;
    if (text === undefined)
      throw new UserError(`checkpoint ${source.weights} embeds no config and there is no ${source.config}; ${source.missingConfig}`);
    const embeddedSource = `${source.weights} (embedded config)`;
    const config = parseCheckpointConfig(text, embeddedSource, source.rewrite);
    assertKind(config, source.weights, expect);
    return { config, tensors: assertFinite(decoded.tensors, source.weights, source.rewrite), recovered: true };
  }
  const config = parseCheckpointConfig(input.configText, source.config, source.rewrite);
  assertKind(config, source.config, expect);
  if (config.weightsSha256 !== undefined) {
    const actual = await sha256Hex(input.weights);
    // Without Web Crypto (a browser page outside a secure context) the pairing cannot be checked.
    if (actual !== null && actual !== config.weightsSha256) {
      const decoded = decode();
      const newer = interruptedSave(config, decoded.metadata.config);
      if (newer) return { config: newer, tensors: assertFinite(decoded.tensors, source.weights, source.rewrite), newerThanConfig: true };
      throw new UserError(
        `checkpoint weights ${source.weights} do not belong to this config ${source.config} ` +
          `(sha256 ${actual.slice(0, 12)}… vs recorded ${config.weightsSha256.slice(0, 12)}…); ${source.mixedUp}`,
      );
    }
  }
  return { config, tensors: assertFinite(decode().tensors, source.weights, source.rewrite) };
}

/** NaN or infinite weights sample to NaN without any error; refuse them at load, naming the tensor. */
function assertFinite(tensors: Record<string, HostTensor>, source: string, rewrite: string): Record<string, HostTensor> {
  for (const [name, t] of Object.entries(tensors)) {
    if (!(t.data instanceof Float32Array || t.data instanceof Float64Array)) continue;
    const i = t.data.findIndex((v) => !Number.isFinite(v));
    if (i >= 0) {
      throw new UserError(
        `checkpoint ${source}: tensor "${name}" has a non-finite value (${t.data[i]}) at index ${i}; ` +
          `the weights are corrupt or training diverged; restore a good checkpoint or ${rewrite}`,
      );
    }
  }
  return tensors;
}

/** Fields that change from one save of a run to the next (settings a resume may change are recorded per segment). */
const PER_SAVE_FIELDS = new Set(["step", "weightsSha256", "losses", "train", "segments"]);

/**
 * A save killed after the weights were renamed into place but before the config was: the weights
 * embed the config of the same run at a later step (every other field equal). Returns that config,
 * or null if the weights belong to another run (or carry no valid config).
 */
function interruptedSave(json: CheckpointConfig, embeddedText: string | undefined): CheckpointConfig | null {
  if (embeddedText === undefined) return null;
  let embedded: CheckpointConfig;
  try {
    embedded = parseCheckpointConfig(embeddedText, "embedded config", "");
  } catch {
    return null;
  }
  const stable = (c: CheckpointConfig) =>
    JSON.stringify(
      Object.fromEntries(
        Object.entries(c)
          .filter(([k]) => !PER_SAVE_FIELDS.has(k))
          .sort(([a], [b]) => a.localeCompare(b)),
      ),
    );
  if (embedded.step < json.step || stable(embedded) !== stable(json)) return null;
  return embedded;
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
    throw new UserError(
      `cannot resume ${where}: it was trained with ${diffs.join(", ")}; pass the same flags, another --out, or --force to start over`,
    );
  }
}

const fmtShape = (shape: readonly number[]): string => `[${shape.join(", ")}]`;
const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Listing more than this many problems buries the hint; the rest are counted. */
const MAX_LISTED = 20;

/**
 * Verify the checkpoint holds exactly the expected weights with exactly the expected shapes. Optimizer
 * tensors ("opt.*") and logs ("log.*") are ignored; EMA tensors ("ema.<name>"), when present, must
 * match their weight. `hint` is what to say instead of a guess, or the flags of the model's family
 * (ModelFamily.shapeFlags) to guess among; without it the guess names no flags.
 */
export function checkParams(
  expected: Record<string, number[]>,
  tensors: Record<string, HostTensor>,
  source: string,
  hint?: string | ShapeFlags,
): void {
  const missing: string[] = [];
  const extra: string[] = [];
  const misshaped: string[] = [];
  for (const [name, shape] of Object.entries(expected)) {
    const t = tensors[name];
    if (!Object.prototype.hasOwnProperty.call(tensors, name) || t === undefined) missing.push(`${name} (expected ${fmtShape(shape)})`);
    else if (!sameShape(t.shape, shape))
      misshaped.push(`${name} is ${fmtShape(t.shape)} in the checkpoint, the model needs ${fmtShape(shape)}`);
  }
  for (const [key, t] of Object.entries(tensors)) {
    if (key.startsWith(TENSOR_PREFIX.opt) || key.startsWith(TENSOR_PREFIX.log)) continue;
    const name = key.startsWith(TENSOR_PREFIX.ema) ? key.slice(TENSOR_PREFIX.ema.length) : key;
    const want = Object.prototype.hasOwnProperty.call(expected, name) ? expected[name] : undefined;
    if (want === undefined) extra.push(`${key} ${fmtShape(t.shape)}`);
    else if (key !== name && !sameShape(t.shape, want))
      misshaped.push(`${key} is ${fmtShape(t.shape)} in the checkpoint, the model needs ${fmtShape(want)}`);
  }
  if (missing.length + extra.length + misshaped.length === 0) return;

  const lines = [
    ...missing.map((s) => `  missing: ${s}`),
    ...extra.map((s) => `  unexpected: ${s}`),
    ...misshaped.map((s) => `  wrong shape: ${s}`),
  ];
  const listed = lines.length > MAX_LISTED ? [...lines.slice(0, MAX_LISTED), `  … and ${lines.length - MAX_LISTED} more`] : lines;
  // Missing/extra names usually mean a different layer count; wrong shapes a different width or input size.
  const flags = typeof hint === "object" ? hint : undefined;
  const guesses: string[] = [];
  if (missing.length + extra.length > 0) guesses.push(`the number of layers${flags ? ` (${flags.layers})` : ""}`);
  if (misshaped.length > 0) guesses.push(`layer sizes${flags ? ` (${flags.sizes})` : ""}`);
  const advice =
    typeof hint === "string"
      ? hint
      : `The model flags probably differ from those used in training: ${guesses.join("; ")}. ` +
        `Pass the same flags as in training, or a checkpoint trained with these.`;
  throw new UserError(`${source} does not fit the model:\n${listed.join("\n")}\n${advice}`);
}
