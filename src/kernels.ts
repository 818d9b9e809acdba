// Loads the kernel module and gives typed views of its memory. Platform-neutral: it takes a
// compiled WebAssembly.Module (what Cloudflare Workers hand you from a static import, since they
// refuse to compile WASM from bytes), the bytes themselves, or (browsers) a URL compiled while it
// streams in. Node's file loading lives in src/node/loadKernels.ts so this file stays free of Node
// built-ins.
import type { KernelAbi, KernelName, Ptr } from "./kernelAbi.js";

const PAGE = 65536;

/**
 * The two kernel builds (assembly/isa.ts): "baseline" is WASM SIMD and runs wherever SIMD does;
 * "relaxed" adds relaxed SIMD (f32x4.relaxed_madd, an FMA on x86 with FMA3 and on ARM64) and runs
 * in Chromium, workerd and Node >= 22 (Node 20 only with --experimental-wasm-relaxed-simd).
 */
export type KernelIsa = "baseline" | "relaxed";

/** File name of each build in build/ (and in the package's `build` folder). */
export const KERNEL_FILES: Readonly<Record<KernelIsa, string>> = {
  baseline: "edgenn.wasm",
  relaxed: "edgenn.relaxed.wasm",
};

/**
 * The inference-only builds (assembly/inference.ts): the kernels InferenceEngine calls and nothing
 * else, from the same sources, so they compute the same bits at under half the size (9.6 KiB
 * gzipped against 26.7 KiB). Serve these to edge functions and pages that only predict; training
 * needs the full build.
 */
export const INFERENCE_KERNEL_FILES: Readonly<Record<KernelIsa, string>> = {
  baseline: "edgenn.infer.wasm",
  relaxed: "edgenn.infer.relaxed.wasm",
};

/**
 * A 49-byte module whose one function is f32x4.relaxed_madd of three f32x4.splat(0.0): the
 * instruction the relaxed build uses. Hand-assembled so the check costs no fetch of the 62 KB
 * kernel module; WebAssembly.validate only decodes, nothing runs.
 */
const RELAXED_MADD_PROBE = /* @__PURE__ */ (() => {
  const splat0 = [0x43, 0, 0, 0, 0, 0xfd, 0x13]; // f32.const 0; f32x4.splat
  const body = [0x00, ...splat0, ...splat0, ...splat0, 0xfd, 0x85, 0x02, 0x0b]; // no locals; relaxed_madd; end
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
    ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b], // type section: () -> v128
    ...[0x03, 0x02, 0x01, 0x00], // function section: one function of type 0
    ...[0x0a, body.length + 2, 0x01, body.length, ...body], // code section
  ]);
})();

/** Whether this runtime compiles relaxed SIMD (so the relaxed kernel build would load). */
export function supportsRelaxedSimd(
  validate: (bytes: BufferSource) => boolean = (b) => WebAssembly.validate(b),
): boolean {
  try {
    return validate(RELAXED_MADD_PROBE);
  } catch {
    return false;
  }
}

/**
 * The kernel build to load: `request` "baseline" or "relaxed" forces one (tests, benchmarks:
 * Node reads it from EDGENN_ISA); empty or "auto" picks relaxed where the runtime validates it and
 * the baseline otherwise. Forcing "relaxed" where it cannot run fails here, with the fix, rather
 * than as a CompileError from the module.
 */
export function pickKernelIsa(
  request?: string,
  supported: () => boolean = supportsRelaxedSimd,
): KernelIsa {
  const r = (request ?? "").trim().toLowerCase();
  if (r === "baseline") return "baseline";
  if (r === "relaxed") {
    if (!supported())
      throw new Error(
        "edgenn: the relaxed-SIMD kernels were requested (EDGENN_ISA=relaxed) but this runtime does not support relaxed SIMD; on Node 20 run node --experimental-wasm-relaxed-simd, or use EDGENN_ISA=baseline",
      );
    return "relaxed";
  }
  if (r === "" || r === "auto") return supported() ? "relaxed" : "baseline";
  throw new Error(`edgenn: unknown kernel ISA "${request}"; use baseline, relaxed or auto`);
}

/**
 * A Model or InferenceEngine whose Kernels instance has since been given to another one (see
 * Kernels.claim): its memory may hold the other's weights, so it refuses to run.
 */
export class KernelsTakenError extends Error {
  override name = "KernelsTakenError";
}

export class Kernels {
  readonly abi: KernelAbi;
  readonly memory: WebAssembly.Memory;
  private buffer: ArrayBuffer;
  private _f32: Float32Array;
  private _i32: Int32Array;
  private _u8: Uint8Array;

  private constructor(instance: WebAssembly.Instance) {
    this.abi = instance.exports as unknown as KernelAbi;
    this.memory = this.abi.memory;
    this.buffer = this.memory.buffer as ArrayBuffer;
    this._f32 = new Float32Array(this.buffer);
    this._i32 = new Int32Array(this.buffer);
    this._u8 = new Uint8Array(this.buffer);
  }

  static async load(source: WebAssembly.Module | BufferSource): Promise<Kernels> {
    const module =
      source instanceof WebAssembly.Module ? source : await WebAssembly.compile(source);
    return new Kernels(await WebAssembly.instantiate(module, {}));
  }

  /**
   * Compiles the kernel module while it downloads (browsers, Web Workers): from a URL, a fetch
   * Response or a promise of one. Falls back to compiling the bytes when the server does not send
   * `Content-Type: application/wasm`, which streaming compilation requires.
   */
  static async compileStreaming(
    source: string | URL | Response | PromiseLike<Response>,
  ): Promise<WebAssembly.Module> {
    const response = await (typeof source === "string" || source instanceof URL
      ? fetch(source)
      : source);
    if (!response.ok)
      throw new Error(
        `edgenn: fetching the kernel module ${response.url} failed: HTTP ${response.status} ${response.statusText}`,
      );
    const mime = response.headers.get("content-type")?.split(";")[0].trim();
    if (mime === "application/wasm" && typeof WebAssembly.compileStreaming === "function")
      return WebAssembly.compileStreaming(response);
    return WebAssembly.compile(await response.arrayBuffer());
  }

  /** Synchronous variant (small modules only in browsers' main thread). */
  static loadSync(source: WebAssembly.Module | BufferSource): Kernels {
    const module = source instanceof WebAssembly.Module ? source : new WebAssembly.Module(source);
    return new Kernels(new WebAssembly.Instance(module, {}));
  }

  /** Which build this instance runs (its kernel_isa export; builds before it had only the baseline). */
  get isa(): KernelIsa {
    const f = (this.abi as unknown as { kernel_isa?: () => number }).kernel_isa;
    return f?.() === 1 ? "relaxed" : "baseline";
  }

  /** True for the inference-only build (assembly/inference.ts), which has no backward kernels. */
  get inferenceOnly(): boolean {
    return typeof (this.abi as unknown as Record<string, unknown>).dense_bwd_f32 !== "function";
  }

  /**
   * The Model or InferenceEngine whose arena this instance's memory holds. Each plans its arena
   * from heapBase, so two on one instance would overwrite each other's weights and buffers: the
   * latest to claim it owns it, and the earlier one refuses to run (checkOwner) instead of
   * computing from the other's numbers. One instance per model (Kernels.load(module) is cheap once
   * the module is compiled); reusing an instance for a new model after dropping the old is fine.
   */
  private owner: object | undefined;

  /** Called by a Model or InferenceEngine before it first writes to this memory. */
  claim(owner: object): void {
    this.owner = owner;
  }

  /** Throws when a later Model or InferenceEngine has claimed this instance since `owner` did. */
  checkOwner(owner: object, what: string): void {
    if (this.owner !== owner)
      throw new KernelsTakenError(
        `edgenn: this ${what}'s kernel instance was given to another Model or InferenceEngine, which planned its memory over this one's weights; give each its own instance (Kernels.load(module), or pass the module instead of the instance)`,
      );
  }

  /** First byte the host may plan into. */
  get heapBase(): Ptr {
    return this.abi.heap_base();
  }

  /** Grows memory so that [0, bytes) is addressable. Views are re-created lazily afterwards. */
  ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes <= have) return;
    const pages = Math.ceil((bytes - have) / PAGE);
    try {
      this.memory.grow(pages);
    } catch (e) {
      throw new RangeError(
        `edgenn: could not grow kernel memory to ${bytes} bytes (${(bytes / 2 ** 20).toFixed(1)} MiB): ${(e as Error).message}`,
      );
    }
  }

  private refresh(): void {
    // memory.grow detaches the old ArrayBuffer: every view must be made anew.
    if (this.buffer !== this.memory.buffer) {
      this.buffer = this.memory.buffer as ArrayBuffer;
      this._f32 = new Float32Array(this.buffer);
      this._i32 = new Int32Array(this.buffer);
      this._u8 = new Uint8Array(this.buffer);
    }
  }

  get f32(): Float32Array {
    this.refresh();
    return this._f32;
  }
  get i32(): Int32Array {
    this.refresh();
    return this._i32;
  }
  get u8(): Uint8Array {
    this.refresh();
    return this._u8;
  }

  /** The scalar twin of a SIMD kernel (test oracle). */
  twin<K extends KernelName>(name: K): KernelAbi[K] {
    const f = (this.abi as unknown as Record<string, unknown>)[`${name}_scalar`];
    if (typeof f !== "function") throw new Error(`kernel ${name} has no scalar twin`);
    return f as KernelAbi[K];
  }

  /** Copies floats into memory at a byte offset. */
  writeF32(ptr: Ptr, data: ArrayLike<number>): void {
    this.f32.set(data, ptr >>> 2);
  }
  /** A copy of n floats at a byte offset. */
  readF32(ptr: Ptr, n: number): Float32Array {
    return this.f32.slice(ptr >>> 2, (ptr >>> 2) + n);
  }
  /** A view (no copy) of n floats at a byte offset; invalid after the next memory.grow. */
  viewF32(ptr: Ptr, n: number): Float32Array {
    return this.f32.subarray(ptr >>> 2, (ptr >>> 2) + n);
  }
}
