// Generated samples (and their labels) as files other tools read: safetensors (tensors "samples"
// and "labels") or NumPy .npy (one array per file, so labels go to FILE.labels.npy beside it).
// The .npy layout follows numpy's format spec, version 1.0: magic "\x93NUMPY", version bytes 1 0,
// a little-endian u16 header length, then an ASCII dict literal padded with spaces and ended by
// "\n" so the data starts on a multiple of 64 bytes, then the row-major little-endian data.
import { UserError } from "../core/errors.js";
import { encodeSafetensors } from "./safetensors.js";
import { writeFileAtomic } from "./atomic.js";

/** The formats --save-samples writes, by file extension. */
export const SAMPLE_FILE_EXTENSIONS = [".safetensors", ".npy"] as const;

/** Throws UserError unless `path` ends in .safetensors or .npy. */
export function checkSamplesPath(path: string): void {
  if (!SAMPLE_FILE_EXTENSIONS.some((e) => path.toLowerCase().endsWith(e))) {
    throw new UserError(`--save-samples ${path}: the file name must end in .safetensors or .npy (the format is taken from it)`);
  }
}

/** One array as a .npy file (float32 '<f4' or int32 '<i4'). */
export function encodeNpy(data: Float32Array | Int32Array, shape: number[]): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new RangeError(`encodeNpy: shape [${shape}] holds ${count} values, got ${data.length}`);
  const descr = data instanceof Float32Array ? "<f4" : "<i4";
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // 10 bytes of preamble + header (with its "\n") is a multiple of 64.
  const headerLen = Math.ceil((10 + dict.length + 1) / 64) * 64 - 10;
  const header = dict.padEnd(headerLen - 1, " ") + "\n";
  const out = new Uint8Array(10 + headerLen + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  new DataView(out.buffer).setUint16(8, headerLen, true);
  for (let i = 0; i < headerLen; i++) out[10 + i] = header.charCodeAt(i);
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // Typed arrays are little-endian on every platform Node runs on (x64, arm64).
  out.set(bytes, 10 + headerLen);
  return out;
}

/** Where labels go beside a .npy samples file: x.npy -> x.labels.npy. */
export function npyLabelsPath(path: string): string {
  return path.replace(/\.npy$/i, ".labels.npy");
}

/**
 * The files for `samples` [n, ...sampleShape] and optional `labels` [n]: path -> bytes.
 * `metadata` goes into the safetensors header (solver, NFE, ...); .npy has no place for it.
 */
export function encodeSamplesFiles(
  path: string,
  samples: Float32Array,
  sampleShape: number[],
  labels: Int32Array | null,
  metadata: Record<string, string> = {},
): Map<string, Uint8Array> {
  checkSamplesPath(path);
  const per = sampleShape.reduce((a, b) => a * b, 1);
  const n = samples.length / per;
  const shape = [n, ...sampleShape];
  const files = new Map<string, Uint8Array>();
  if (path.toLowerCase().endsWith(".npy")) {
    files.set(path, encodeNpy(samples, shape));
    if (labels) files.set(npyLabelsPath(path), encodeNpy(labels, [labels.length]));
  } else {
    const tensors = {
      samples: { dtype: "F32" as const, shape, data: samples },
      ...(labels ? { labels: { dtype: "I32" as const, shape: [labels.length], data: labels } } : {}),
    };
    files.set(path, encodeSafetensors(tensors, metadata));
  }
  return files;
}

/** Writes the files of encodeSamplesFiles atomically; returns their paths. */
export async function writeSamplesFiles(...args: Parameters<typeof encodeSamplesFiles>): Promise<string[]> {
  const files = encodeSamplesFiles(...args);
  for (const [path, bytes] of files) await writeFileAtomic(path, bytes);
  return [...files.keys()];
}
