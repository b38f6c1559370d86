// A small, strict implementation of the safetensors format (https://github.com/huggingface/safetensors):
//   [u64 little-endian N][N bytes of JSON header, space-padded][raw little-endian tensor bytes]
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the
// start of the data section) plus an optional "__metadata__" string-to-string map.
// No maintained npm package covers this (the `safetensors` package is a stub), and the format is tiny.
import { UserError } from "../core/errors.js";

/** The safetensors element types flowmatch reads and writes. */
export type Dtype = "F32" | "F64" | "I32" | "U8" | "I64";
/** Typed-array storage for each Dtype (I64 as BigInt64Array). */
export type HostTensorData = Float32Array | Float64Array | Int32Array | Uint8Array | BigInt64Array;

/** One tensor on the host: dtype, shape and row-major little-endian data. */
export interface HostTensor {
  dtype: Dtype;
  shape: number[];
  data: HostTensorData;
}

export const DTYPE_ITEMSIZE: Readonly<Record<Dtype, number>> = { F32: 4, F64: 8, I32: 4, U8: 1, I64: 8 };

/** Dtypes valid in safetensors that this reader does not convert. */
const UNSUPPORTED_DTYPES = new Set([
  "BOOL",
  "I8",
  "I16",
  "U16",
  "U32",
  "U64",
  "F16",
  "BF16",
  "F8_E4M3",
  "F8_E5M2",
  "F8_E8M0",
  "F6_E2M3",
  "F6_E3M2",
  "F4",
  "C64",
]);

const METADATA_KEY = "__metadata__";
/** Same cap as the reference implementation: larger headers are corruption, not models. */
const MAX_HEADER_BYTES = 100_000_000;
const HEADER_ALIGN = 8;

// Typed arrays use the host byte order; safetensors is little-endian. Every Node target and browser
// is LE, so we check rather than byte-swapping (with typed arrays, not node:os: the page uses this too).
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
function assertLittleEndianHost(): void {
  if (!LITTLE_ENDIAN_HOST) throw new Error("safetensors I/O needs a little-endian host");
}

function isDtype(s: string): s is Dtype {
  return Object.prototype.hasOwnProperty.call(DTYPE_ITEMSIZE, s);
}

function dataMatchesDtype(dtype: Dtype, data: HostTensorData): boolean {
  switch (dtype) {
    case "F32":
      return data instanceof Float32Array;
    case "F64":
      return data instanceof Float64Array;
    case "I32":
      return data instanceof Int32Array;
    case "U8":
      return data instanceof Uint8Array;
    case "I64":
      return data instanceof BigInt64Array;
  }
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isSafeInteger(d) && d >= 0);
}

/** Serialize tensors (insertion order) and optional string metadata to safetensors bytes. */
export function encodeSafetensors(tensors: Record<string, HostTensor>, metadata?: Record<string, string>): Uint8Array {
  assertLittleEndianHost();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") throw new TypeError(`safetensors metadata "${key}" must be a string, got ${typeof value}`);
    }
    header[METADATA_KEY] = metadata;
  }
  let offset = 0;
  const entries = Object.entries(tensors);
  for (const [name, t] of entries) {
    if (name === METADATA_KEY) throw new TypeError(`"${METADATA_KEY}" is reserved and cannot name a tensor`);
    if (!isDtype(t.dtype)) throw new TypeError(`tensor "${name}": unsupported dtype ${String(t.dtype)}`);
    if (!isShape(t.shape)) throw new TypeError(`tensor "${name}": shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`);
    if (!dataMatchesDtype(t.dtype, t.data))
      throw new TypeError(`tensor "${name}": data is a ${t.data.constructor.name}, which does not match dtype ${t.dtype}`);
    if (t.data.length !== product(t.shape)) {
      throw new TypeError(`tensor "${name}": shape [${t.shape.join(", ")}] needs ${product(t.shape)} elements, data has ${t.data.length}`);
    }
    const end = offset + t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, end] };
    offset = end;
  }
  let json = JSON.stringify(header);
  const jsonBytes = new TextEncoder().encode(json);
  // Pad so the data section starts 8-byte aligned (8-byte length prefix + padded header).
  const padded = Math.ceil(jsonBytes.length / HEADER_ALIGN) * HEADER_ALIGN;
  json += " ".repeat(padded - jsonBytes.length);

  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(new TextEncoder().encode(json), 8);
  let pos = 8 + padded;
  for (const [, t] of entries) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}

interface ParsedEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Parse and validate safetensors bytes. Every defect (truncation, bad JSON, unknown dtype, offsets that
 * overlap or leave gaps, byte counts that disagree with the shape) throws a UserError naming `source`.
 * Tensor data is copied into fresh, aligned typed arrays that do not alias `bytes`. `fix` is the advice
 * that ends those messages.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  source = "safetensors data",
  fix = "re-run training to write it again, or pass a valid --ckpt",
): {
  tensors: Record<string, HostTensor>;
  metadata: Record<string, string>;
} {
  assertLittleEndianHost();
  const corrupt = (defect: string): UserError => new UserError(`${source} is corrupt: ${defect}; ${fix}`);

  if (bytes.length < 8) throw corrupt(`file has ${bytes.length} bytes, too few for the 8-byte header length`);
  const headerLen64 = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  const available = bytes.length - 8;
  if (headerLen64 > BigInt(available))
    throw corrupt(`header says ${headerLen64} bytes but file has ${available} after the length field (truncated?)`);
  const headerLen = Number(headerLen64);
  if (headerLen > MAX_HEADER_BYTES) throw corrupt(`header of ${headerLen} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);

  let headerText: string;
  try {
    headerText = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    throw corrupt("header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (err) {
    throw corrupt(`header is not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw corrupt("header is not a JSON object");

  const metadata: Record<string, string> = {};
  const entries: ParsedEntry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw corrupt(`"${METADATA_KEY}" is not an object`);
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== "string") throw corrupt(`metadata "${k}" is not a string`);
        setOwn(metadata, k, v);
      }
      continue;
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw))
      throw corrupt(`tensor "${name}" has no {dtype, shape, data_offsets} entry`);
    const info = raw as Record<string, unknown>;
    const dtype = info.dtype;
    if (typeof dtype !== "string") throw corrupt(`tensor "${name}" has no dtype`);
    if (!isDtype(dtype)) {
      if (UNSUPPORTED_DTYPES.has(dtype)) {
        throw new UserError(
          `${source}: tensor "${name}" has dtype ${dtype}, which flowmatch does not read ` +
            `(supported: ${Object.keys(DTYPE_ITEMSIZE).join(", ")}); convert the file to F32 first`,
        );
      }
      throw corrupt(`tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
    }
    if (!isShape(info.shape))
      throw corrupt(`tensor "${name}" has shape ${JSON.stringify(info.shape)}, not a list of non-negative integers`);
    const offsets = info.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw corrupt(`tensor "${name}" has data_offsets ${JSON.stringify(offsets)}, expected [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const expectedBytes = product(info.shape) * DTYPE_ITEMSIZE[dtype];
    if (end - begin !== expectedBytes) {
      throw corrupt(
        `tensor "${name}" (${dtype} [${info.shape.join(", ")}]) needs ${expectedBytes} bytes but data_offsets span ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape: info.shape, begin, end });
  }

  // The tensors must tile the data section exactly: sorted by offset, each starts where the last ended.
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: ParsedEntry | undefined;
  for (const e of sorted) {
    if (e.begin < cursor) throw corrupt(`tensors "${previous?.name}" and "${e.name}" overlap (bytes ${e.begin}..${cursor})`);
    if (e.begin > cursor) throw corrupt(`gap of ${e.begin - cursor} unused bytes before tensor "${e.name}" at offset ${cursor}`);
    if (e.end > dataLen) throw corrupt(`tensor "${e.name}" ends at byte ${e.end} but the data section has ${dataLen} bytes (truncated?)`);
    cursor = e.end;
    previous = e;
  }
  if (cursor !== dataLen) throw corrupt(`${dataLen - cursor} trailing bytes after the last tensor`);

  const tensors: Record<string, HostTensor> = {};
  for (const e of entries) {
    // Copy into a fresh ArrayBuffer: aligned for any element size and not aliasing the input. (Not
    // bytes.slice(): on a Node Buffer that returns a view into the shared pool.)
    const buf = new ArrayBuffer(e.end - e.begin);
    new Uint8Array(buf).set(bytes.subarray(dataStart + e.begin, dataStart + e.end));
    setOwn(tensors, e.name, { dtype: e.dtype, shape: e.shape, data: viewAs(e.dtype, buf) });
  }
  return { tensors, metadata };
}

/** Plain assignment would treat a key named "__proto__" (valid JSON) as the prototype. */
function setOwn<T>(target: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function viewAs(dtype: Dtype, buf: ArrayBuffer): HostTensorData {
  switch (dtype) {
    case "F32":
      return new Float32Array(buf);
    case "F64":
      return new Float64Array(buf);
    case "I32":
      return new Int32Array(buf);
    case "U8":
      return new Uint8Array(buf);
    case "I64":
      return new BigInt64Array(buf);
  }
}
