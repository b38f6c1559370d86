// Checkpoints on disk: <dir>/ckpt.safetensors (weights) plus <dir>/ckpt.json (config). What the files
// hold and every rule for reading them live in checkpointFormat.ts (bytes only, shared with the
// browser); this module maps paths to the two files, reads and writes them. The weights file embeds
// the config and is replaced by one atomic rename, so a run killed between the two writes still
// loads its newest weights instead of losing the last good checkpoint.
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import { UserError } from "../core/errors.js";
import { writeFileAtomic } from "./atomic.js";
import {
  assertKind,
  CONFIG_FILE,
  encodeCheckpoint,
  parseCheckpoint,
  parseCheckpointConfig,
  WEIGHTS_FILE,
  type Checkpoint,
  type CheckpointSource,
  type ExpectKind,
} from "./checkpointFormat.js";

export {
  assertSameSetup,
  checkParams,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  CONFIG_FILE,
  firstNonFinite,
  WEIGHTS_FILE,
  type Checkpoint,
  type CheckpointConfig,
  type Setting,
} from "./checkpointFormat.js";

/**
 * Write the weights, then the config that names their hash; each file atomically. A checkpoint
 * holding a NaN or an infinity is refused, so the previous one on disk stays the last good one.
 */
export async function saveCheckpoint(dir: string, ckpt: Checkpoint): Promise<void> {
  const { weights, configText } = await encodeCheckpoint(ckpt, dir);
  await writeFileAtomic(join(dir, WEIGHTS_FILE), weights);
  await writeFileAtomic(join(dir, CONFIG_FILE), configText);
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
      `no checkpoint at ${pathOrDir}: it is not a folder, a .safetensors file or a .json file; ` +
        `run training first (its --out folder holds ${CONFIG_FILE} and ${WEIGHTS_FILE}) and pass that folder as --ckpt`,
    );
  }
  return { weightsPath: join(pathOrDir, WEIGHTS_FILE), configPath: join(pathOrDir, CONFIG_FILE) };
}

async function readCheckpointFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      throw new UserError(
        `checkpoint ${what} ${path} does not exist; run training first to create it, ` +
          `or pass the folder of an existing checkpoint as --ckpt`,
      );
    throw new UserError(`cannot read checkpoint ${what} ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Load a checkpoint from its folder, its .safetensors path or its .json path. With `expect.kind`, a
 * checkpoint of another model kind is refused; `expect.command` names the command in that message.
 */
export async function loadCheckpoint(pathOrDir: string, expect?: ExpectKind): Promise<Checkpoint> {
  const { weightsPath, configPath } = await checkpointFiles(pathOrDir);
  const source: CheckpointSource = {
    weights: weightsPath,
    config: configPath,
    rewrite: "re-run training to write it again, or pass a valid --ckpt",
    missingConfig: `restore ${CONFIG_FILE} or re-run training`,
    mixedUp: "the files were mixed up; re-run training or restore both files together",
  };
  // ckpt.json missing (a first save killed between its two writes, or a lost file): the weights embed their config.
  if (!existsSync(configPath) && existsSync(weightsPath)) {
    return parseCheckpoint({ weights: await readCheckpointFile(weightsPath, "weights"), configText: null }, source, expect);
  }
  const configText = (await readCheckpointFile(configPath, "config")).toString("utf8");
  // Refuse a bad config or the wrong kind before reading weights that may be large.
  assertKind(parseCheckpointConfig(configText, configPath, source.rewrite), configPath, expect);
  return parseCheckpoint({ weights: await readCheckpointFile(weightsPath, "weights"), configText }, source, expect);
}
