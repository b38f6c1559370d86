// Reflow's teacher pairs are its expensive part: keep them in <out>/pairs.safetensors, tagged with
// what produced them, so a second run (or one after a crash) reuses them instead of re-solving.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { UserError } from "../core/errors.js";
import { decodeSafetensors, encodeSafetensors, type HostTensor } from "../io/safetensors.js";
import { writeFileAtomic } from "../io/atomic.js";

/**
 * The tensors stored at `path` if its metadata equals `meta`; otherwise `generate()`'s, written
 * atomically with `meta`. `shapes` are the tensors a cache with this metadata must hold: a file that
 * claims `meta` but holds other tensors (truncated, edited) is refused, never reused.
 */
export async function cachedPairs(
  path: string,
  meta: Record<string, string>,
  shapes: Record<string, number[]>,
  generate: () => Promise<Record<string, HostTensor>>,
  log: (line: string) => void = () => {},
): Promise<Record<string, HostTensor>> {
  if (existsSync(path)) {
    const deleteIt = `delete ${path} and run again to regenerate the pairs`;
    const { tensors, metadata } = decodeSafetensors(await readFile(path), `reflow pairs cache ${path}`, deleteIt);
    if (Object.entries(meta).every(([k, v]) => metadata[k] === v)) {
      const missing = Object.keys(shapes).filter((n) => tensors[n] === undefined);
      if (missing.length > 0) throw new UserError(`${path} is not a reflow pairs file (missing ${missing.join(", ")}); ${deleteIt}`);
      for (const [name, shape] of Object.entries(shapes)) {
        const got = tensors[name].shape;
        if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
          const rows =
            got[0] === shape[0]
              ? `"${name}" is [${got.join(", ")}], expected [${shape.join(", ")}]`
              : `${got[0] ?? 0} pairs in "${name}" but its metadata says n=${meta.n ?? shape[0]}`;
          throw new UserError(`${path} holds ${rows}; the file was changed or cut short; ${deleteIt}`);
        }
      }
      log(`reusing ${meta.n} teacher pairs from ${path}`);
      return tensors;
    }
  }
  const tensors = await generate();
  await writeFileAtomic(path, encodeSafetensors(tensors, meta));
  log(`wrote ${meta.n} teacher pairs to ${path}`);
  return tensors;
}

/** The tensor's data as a Float32Array, or a UserError naming the file. */
export function f32(tensors: Record<string, HostTensor>, name: string, path: string): Float32Array {
  const data = tensors[name]?.data;
  if (!(data instanceof Float32Array))
    throw new UserError(`${path}: tensor "${name}" must be F32; delete ${path} and run again to regenerate the pairs`);
  return data;
}
