// The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/), raw or gzip'd.
// Platform-neutral: no Node built-ins, gzip goes through the web-standard DecompressionStream
// (Node 18+, browsers, Cloudflare Workers), so the same code loads data in every runtime.
//
// Layout: bytes 0-1 are zero, byte 2 is the element type, byte 3 the number of dimensions n,
// then n big-endian u32 dimension sizes, then the elements in row-major order.

/** Element type codes of the IDX format; edgenn reads only 0x08. */
const IDX_TYPES: Record<number, string> = {
  0x08: "unsigned byte",
  0x09: "signed byte",
  0x0b: "int16",
  0x0c: "int32",
  0x0d: "float32",
  0x0e: "float64",
};

const IDX_UBYTE = 0x08;

/** More axes than any real IDX data set has (MNIST-style files use 1 or 3). */
export const IDX_MAX_DIMS = 8;

/** Default cap on the element count (1 GiB of ubyte), so a corrupt header cannot ask for absurd memory. */
export const IDX_MAX_ELEMENTS = 2 ** 30;

/** One parsed IDX file. `data` is a view into the bytes that were parsed (row-major, `dims` order). */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
  /** The name given to parseIdx/decodeIdx (a file path), used by later errors about this file. */
  name?: string;
  /** True when the bytes were gzip'd: byte offsets in later errors count decompressed bytes. */
  decompressed?: boolean;
}

export interface IdxOptions {
  /** Largest element count accepted (default IDX_MAX_ELEMENTS). */
  maxElements?: number;
}

/**
 * A file that is not a well-formed ubyte IDX file. `offset` is the byte where the problem is
 * (in the decompressed stream when `decompressed` is true; -1 when no offset applies).
 */
export class IdxFormatError extends Error {
  constructor(
    readonly file: string,
    readonly problem: string,
    readonly offset: number,
    readonly decompressed = false,
  ) {
    super(
      `${file}: ${problem}` +
        (offset >= 0
          ? ` (at byte ${offset}${decompressed ? " of the decompressed data" : ""})`
          : ""),
    );
    this.name = "IdxFormatError";
  }
}

function hex(b: number): string {
  return `0x${b.toString(16).padStart(2, "0")}`;
}

/** True when the bytes start with the gzip magic 1f 8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Parses an uncompressed ubyte IDX file. Use `decodeIdx` for bytes that may be gzip'd. */
export function parseIdx(bytes: Uint8Array, name?: string, options?: IdxOptions): IdxArray {
  return named(
    parseIdxBytes(bytes, name ?? DEFAULT_NAME, options?.maxElements ?? IDX_MAX_ELEMENTS, false),
    name,
  );
}

const DEFAULT_NAME = "IDX data";

function named(a: IdxArray, name: string | undefined): IdxArray {
  return name === undefined ? a : { ...a, name };
}

function parseIdxBytes(
  bytes: Uint8Array,
  name: string,
  maxElements: number,
  decompressed: boolean,
): IdxArray {
  const fail = (problem: string, offset: number): never => {
    throw new IdxFormatError(name, problem, offset, decompressed);
  };
  if (isGzip(bytes) && !decompressed)
    fail("is gzip-compressed; decode it with decodeIdx, which decompresses first", 0);
  if (bytes.length < 4)
    fail(
      `short header: ${bytes.length} byte${bytes.length === 1 ? "" : "s"}, an IDX file needs at least 4 (magic, type, dimension count)`,
      bytes.length,
    );
  if (bytes[0] !== 0 || bytes[1] !== 0)
    fail(
      `bad magic: starts with ${hex(bytes[0])} ${hex(bytes[1])}, an IDX file starts with two zero bytes`,
      0,
    );
  const type = bytes[2];
  if (type !== IDX_UBYTE) {
    const known = IDX_TYPES[type];
    fail(
      known
        ? `element type ${hex(type)} (${known}) is not supported; edgenn reads only ${hex(IDX_UBYTE)} (unsigned byte)`
        : `unknown element type code ${hex(type)}; IDX types are ${Object.entries(IDX_TYPES)
            .map(([c, n]) => `${hex(Number(c))} ${n}`)
            .join(", ")}`,
      2,
    );
  }
  const ndims = bytes[3];
  if (ndims === 0 || ndims > IDX_MAX_DIMS)
    fail(`dimension count ${ndims} is not in 1..${IDX_MAX_DIMS}`, 3);
  const headerBytes = 4 + 4 * ndims;
  if (bytes.length < headerBytes)
    fail(
      `short header: ${ndims} dimensions need a ${headerBytes}-byte header, the data has only ${bytes.length} bytes`,
      bytes.length,
    );
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < ndims; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    count *= d;
    // Checked after every factor so the product stays an exact integer (well below 2^53).
    if (count > 0xffffffff)
      fail(
        `dimensions ${dims.join(" x ")}${i < ndims - 1 ? " x ..." : ""} overflow: the element count does not fit in 32 bits`,
        4 + 4 * i,
      );
    if (count > maxElements)
      fail(
        `dimensions ${dims.join(" x ")}${i < ndims - 1 ? " x ..." : ""} are too large: more than the limit of ${maxElements} elements`,
        4 + 4 * i,
      );
  }
  const have = bytes.length - headerBytes;
  if (have < count)
    fail(
      `truncated: dimensions ${dims.join(" x ")} need ${count} data bytes after the ${headerBytes}-byte header, found ${have} (${count - have} missing)`,
      bytes.length,
    );
  if (have > count)
    fail(
      `${have - count} trailing byte${have - count === 1 ? "" : "s"} after the ${count} data bytes of dimensions ${dims.join(" x ")}`,
      headerBytes + count,
    );
  return { dims, data: bytes.subarray(headerBytes, headerBytes + count) };
}

/** Parses IDX bytes, gunzipping first when they start with the gzip magic. */
export async function decodeIdx(
  bytes: Uint8Array,
  name?: string,
  options?: IdxOptions,
): Promise<IdxArray> {
  const file = name ?? DEFAULT_NAME;
  const maxElements = options?.maxElements ?? IDX_MAX_ELEMENTS;
  if (!isGzip(bytes)) return named(parseIdxBytes(bytes, file, maxElements, false), name);
  // The decompressed size is capped too, so a gzip bomb fails fast instead of exhausting memory.
  const raw = await gunzip(bytes, file, maxElements + 4 + 4 * IDX_MAX_DIMS);
  return { ...named(parseIdxBytes(raw, file, maxElements, true), name), decompressed: true };
}

async function gunzip(bytes: Uint8Array, name: string, maxBytes: number): Promise<Uint8Array> {
  const stream = new DecompressionStream("gzip");
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  // A corrupt stream rejects both the write side and the read side; the read side reports it.
  const writing = writer
    .write(bytes as Uint8Array<ArrayBuffer>)
    .then(() => writer.close())
    .catch(() => undefined);
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new IdxFormatError(
          name,
          `decompresses to more than ${maxBytes} bytes, above the IDX size limit`,
          maxBytes,
          true,
        );
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof IdxFormatError) throw e;
    throw new IdxFormatError(
      name,
      `corrupt gzip stream after ${total} decompressed bytes: ${(e as Error).message}`,
      -1,
    );
  }
  await writing;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
