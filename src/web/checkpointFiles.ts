// Reads a checkpoint the CLI wrote (ckpt.safetensors + ckpt.json) from files a person picked or
// dropped in the page. The Node loader (src/io/checkpoint.ts) reads paths; this one gets bytes and
// applies the same checks: file types, corrupt safetensors, config format, and the recorded sha256
// that ties a config to its weights. Every problem is a UserError the page shows as is.
import { UserError } from "../core/errors.js";
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, type CheckpointConfig } from "../io/checkpoint.js";
import { decodeSafetensors, type HostTensor } from "../io/safetensors.js";
import type { LoadedFile } from "./protocol.js";

export interface PickedCheckpoint {
  config: CheckpointConfig;
  tensors: Record<string, HostTensor>;
  weightsName: string;
  /** The .json file, or "<weights> (embedded config)" when only the weights were given. */
  configName: string;
}

const PAIR_HINT = "choose the ckpt.safetensors and ckpt.json that flowmatch wrote into a training run's --out folder";

function extensionOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot).toLowerCase();
}

/** Sorts picked files into weights and config, refusing anything else. */
function pairUp(files: LoadedFile[]): { weights: LoadedFile; config: LoadedFile | null } {
  const weights: LoadedFile[] = [];
  const configs: LoadedFile[] = [];
  for (const f of files) {
    const ext = extensionOf(f.name);
    if (ext === ".safetensors") weights.push(f);
    else if (ext === ".json") configs.push(f);
    else throw new UserError(`"${f.name}" is not a checkpoint file (expected .safetensors or .json); ${PAIR_HINT}`);
  }
  if (weights.length > 1 || configs.length > 1) {
    throw new UserError(`got ${weights.length} .safetensors and ${configs.length} .json files; ${PAIR_HINT} (one of each)`);
  }
  if (weights.length === 0) {
    throw new UserError(`"${configs[0]?.name ?? "?"}" holds only the model config; also choose the ckpt.safetensors saved with it (select both files at once, or drop both)`);
  }
  return { weights: weights[0], config: configs[0] ?? null };
}

function parseConfig(raw: unknown, source: string): CheckpointConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new UserError(`${source} is not a JSON object; ${PAIR_HINT}`);
  const cfg = raw as Record<string, unknown>;
  if (cfg.format !== CHECKPOINT_FORMAT) {
    throw new UserError(`${source} is not a flowmatch checkpoint config (its "format" is ${JSON.stringify(cfg.format)}, expected "${CHECKPOINT_FORMAT}"); ${PAIR_HINT}`);
  }
  if (cfg.version !== CHECKPOINT_VERSION) {
    throw new UserError(`${source} has checkpoint version ${JSON.stringify(cfg.version)}; this page reads version ${CHECKPOINT_VERSION}`);
  }
  if (typeof cfg.kind !== "string") throw new UserError(`${source} has no model "kind"; re-run training to write it again`);
  if (typeof cfg.step !== "number" || !Number.isInteger(cfg.step) || cfg.step < 0) throw new UserError(`${source} has no valid "step"; re-run training to write it again`);
  return cfg as CheckpointConfig;
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UserError(`${source} is not valid JSON (${err instanceof Error ? err.message : String(err)}); ${PAIR_HINT}`);
  }
}

async function sha256Hex(bytes: ArrayBuffer): Promise<string | null> {
  // crypto.subtle exists only in secure contexts (https or localhost); elsewhere the check is skipped.
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return null;
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function decodeWeights(weights: LoadedFile): ReturnType<typeof decodeSafetensors> {
  try {
    return decodeSafetensors(new Uint8Array(weights.bytes), `"${weights.name}"`);
  } catch (err) {
    // The decoder's advice names the CLI flag; on the page the fix is picking another file.
    if (err instanceof UserError) throw new UserError(err.message.replace(/, or pass a valid --ckpt$/, ", or choose another checkpoint"));
    throw err;
  }
}

export async function readCheckpointFiles(files: LoadedFile[]): Promise<PickedCheckpoint> {
  if (files.length === 0) throw new UserError(`no files were given; ${PAIR_HINT}`);
  const { weights, config: configFile } = pairUp(files);
  const { tensors, metadata } = decodeWeights(weights);
  const embedded = metadata.config === undefined ? null : parseConfig(parseJson(metadata.config, `the config inside "${weights.name}"`), `the config inside "${weights.name}"`);
  if (configFile === null) {
    if (!embedded) throw new UserError(`"${weights.name}" carries no model config; also choose the ckpt.json saved with it`);
    return { config: embedded, tensors, weightsName: weights.name, configName: `${weights.name} (embedded config)` };
  }
  const text = new TextDecoder().decode(configFile.bytes);
  const config = parseConfig(parseJson(text, `"${configFile.name}"`), `"${configFile.name}"`);
  if (typeof config.weightsSha256 === "string") {
    const actual = await sha256Hex(weights.bytes);
    if (actual !== null && actual !== config.weightsSha256) {
      // A save interrupted between its two files leaves newer weights of the same run: use them.
      const sameRun = embedded !== null && embedded.runId === config.runId && embedded.kind === config.kind && embedded.step >= config.step;
      if (sameRun && embedded) return { config: embedded, tensors, weightsName: weights.name, configName: `${weights.name} (embedded config)` };
      throw new UserError(
        `"${weights.name}" does not belong to "${configFile.name}" (its sha256 ${actual.slice(0, 12)}… differs from the recorded ${config.weightsSha256.slice(0, 12)}…): the two files come from different runs or saves; choose the pair that was saved together`,
      );
    }
  }
  return { config, tensors, weightsName: weights.name, configName: configFile.name };
}
