// Atomic file writes: readers see either the old file or the complete new one, never a torn write,
// because the data goes to a temp file in the same folder (same filesystem) and is renamed over the target.
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";

// Temp names carry our tag and the writer's pid, so a later run can tell a killed writer's leftovers
// from anything else in the folder: `<target>.flowmatch-<pid>-<12 hex>.tmp`.
const TEMP_NAME = /^.+\.flowmatch-(\d+)-[0-9a-f]{12}\.tmp$/;
// Earlier releases wrote `<target>.<pid>.<12 hex>.tmp`; only these targets of ours are recognised.
const LEGACY_TEMP_NAME = /^(?:ckpt\.safetensors|ckpt\.json|pairs\.safetensors)\.(\d+)\.[0-9a-f]{12}\.tmp$/;

function tempPathFor(path: string): string {
  return `${path}.flowmatch-${process.pid}-${randomBytes(6).toString("hex")}.tmp`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

const cleaned = new Set<string>();

/**
 * Delete temp files that a killed atomic write left in `dir`: only names of our own pattern, whose
 * writer's pid is gone and which are older than this process (so a reused pid or another machine's
 * writer sharing the folder is left alone). Returns the names removed; never throws.
 */
export function removeStaleTemps(dir: string): string[] {
  const removed: string[] = [];
  const processStartMs = Date.now() - process.uptime() * 1000;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = TEMP_NAME.exec(name) ?? LEGACY_TEMP_NAME.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    const path = join(dir, name);
    try {
      const st = statSync(path);
      if (!st.isFile() || st.mtimeMs >= processStartMs) continue;
      rmSync(path);
      removed.push(name);
    } catch {
      // Gone already or not ours to remove: leave it.
    }
  }
  return removed;
}

/** {@link removeStaleTemps} once per folder per process, before the first write there. */
function cleanOnce(dir: string): void {
  const key = resolve(dir);
  if (cleaned.has(key)) return;
  cleaned.add(key);
  removeStaleTemps(dir);
}

/** Flush the folder entry so the rename itself survives a crash; not possible on every platform. */
function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Windows cannot open folders; the rename is still atomic there.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // See fsyncDirSync.
  }
}

/** Write `data` to `path` atomically (temp file + fsync + rename); creates parent folders. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  cleanOnce(dir);
  const tmp = tempPathFor(path);
  try {
    // "wx": never clobber another writer's temp file.
    const handle = await open(tmp, "wx");
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/** Synchronous twin of {@link writeFileAtomic}. */
export function writeFileAtomicSync(path: string, data: Uint8Array | string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  cleanOnce(dir);
  const tmp = tempPathFor(path);
  try {
    const fd = openSync(tmp, "wx");
    try {
      writeFileSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDirSync(dir);
}
