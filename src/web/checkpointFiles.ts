// Reads a checkpoint the CLI wrote (ckpt.safetensors + ckpt.json) from files a person picked or
// dropped in the page. The Node loader (src/io/checkpoint.ts) reads paths; both hand the bytes to
// parseCheckpoint (src/io/checkpointFormat.ts), so the page applies the CLI's rules: corrupt
// safetensors, config format, kind, the recorded sha256 that ties a config to its weights, and which
// interrupted saves may be recovered. This module only sorts the picked files into the pair. Every
// problem is a UserError the page shows as is.
import { UserError } from "../core/errors.js";
import { parseCheckpoint, type CheckpointConfig, type CheckpointSource } from "../io/checkpointFormat.js";
import type { HostTensor } from "../io/safetensors.js";
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
    throw new UserError(
      `"${configs[0]?.name ?? "?"}" holds only the model config; also choose the ckpt.safetensors saved with it ` +
        `(select both files at once, or drop both)`,
    );
  }
  return { weights: weights[0], config: configs[0] ?? null };
}

export async function readCheckpointFiles(files: LoadedFile[]): Promise<PickedCheckpoint> {
  if (files.length === 0) throw new UserError(`no files were given; ${PAIR_HINT}`);
  const { weights, config } = pairUp(files);
  const source: CheckpointSource = {
    weights: `"${weights.name}"`,
    config: config === null ? `ckpt.json` : `"${config.name}"`,
    rewrite: "re-run training to write it again, or choose another checkpoint",
    missingConfig: "also choose the ckpt.json saved with it",
    mixedUp: "the two files come from different runs or saves; choose the pair that was saved together",
  };
  const configText = config === null ? null : new TextDecoder().decode(config.bytes);
  const ckpt = await parseCheckpoint({ weights: new Uint8Array(weights.bytes), configText }, source);
  const embedded = config === null || ckpt.newerThanConfig === true;
  return {
    config: ckpt.config,
    tensors: ckpt.tensors,
    weightsName: weights.name,
    configName: embedded ? `${weights.name} (embedded config)` : config.name,
  };
}
