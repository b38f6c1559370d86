// The IDX format of MNIST-style datasets, parsed by hand: it is a 4-byte magic (0, 0, dtype, rank),
// rank big-endian uint32 sizes, then the values. Only unsigned bytes (dtype 0x08) occur in practice.
import { gunzipSync } from "node:zlib";
import { UserError } from "../core/errors.js";

const UBYTE = 0x08;
export const IDX_IMAGES_MAGIC = 0x00000803;
export const IDX_LABELS_MAGIC = 0x00000801;

const hex = (v: number) => `0x${v.toString(16).padStart(8, "0")}`;

/** gzip streams start with 1f 8b; IDX files start with two zero bytes, so the check cannot misfire. */
function maybeGunzip(bytes: Uint8Array, source: string): Uint8Array {
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    return gunzipSync(bytes);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new UserError(`${source}: the gzip data is corrupt (${why}) — download or copy the file again`);
  }
}

/**
 * Parses an unsigned-byte IDX file (gzipped or not) and checks its header against its length.
 * `kind` pins the expected magic (images: 3 dims, labels: 1 dim); without it any rank is accepted.
 */
export function parseIdx(bytes: Uint8Array, source: string, kind?: "images" | "labels"): { dims: number[]; data: Uint8Array } {
  bytes = maybeGunzip(bytes, source);
  if (bytes.length < 4) {
    throw new UserError(`${source}: file is ${bytes.length} bytes, too short for an IDX header — the file is truncated or not an IDX file`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  const rank = magic & 0xff;
  if (kind !== undefined) {
    const expected = kind === "images" ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC;
    if (magic !== expected) {
      const what = kind === "images" ? "an IDX image file" : "an IDX label file";
      throw new UserError(`${source}: bad magic number ${hex(magic)}, expected ${hex(expected)} — the file is not ${what} or is corrupt`);
    }
  } else if (magic >>> 8 !== UBYTE || rank === 0) {
    throw new UserError(
      `${source}: bad magic number ${hex(magic)}, expected 0x000008NN (unsigned-byte IDX with NN dimensions) ` +
        `— the file is not an IDX file or is corrupt`,
    );
  }
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) {
    throw new UserError(
      `${source}: file is ${bytes.length} bytes, too short for an IDX header with ${rank} dimensions — the file is truncated`,
    );
  }
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  const expectedBytes = headerBytes + dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== expectedBytes) {
    throw new UserError(
      `${source}: header says ${dims.join("x")} values (${expectedBytes} bytes) but the file has ${bytes.length} bytes ` +
        `— the file is truncated or corrupt`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

/** Writes an unsigned-byte IDX file (uncompressed); gzip the result with node:zlib if wanted. */
export function encodeIdx(dims: number[], data: Uint8Array): Uint8Array {
  if (dims.length < 1 || dims.length > 255) throw new RangeError(`IDX needs 1 to 255 dimensions, got ${dims.length}`);
  for (const d of dims) if (!Number.isInteger(d) || d < 0 || d > 0xffffffff) throw new RangeError(`IDX dimension ${d} is not a uint32`);
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new RangeError(`IDX dims ${dims.join("x")} hold ${count} values but data has ${data.length}`);
  const headerBytes = 4 + 4 * dims.length;
  const out = new Uint8Array(headerBytes + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, (UBYTE << 8) | dims.length);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  out.set(data, headerBytes);
  return out;
}
