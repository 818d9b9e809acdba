// Loads the kernel module and gives typed views of its memory. Platform-neutral: it takes a
// compiled WebAssembly.Module (what Cloudflare Workers hand you from a static import, since they
// refuse to compile WASM from bytes), the bytes themselves, or (browsers) a URL compiled while it
// streams in. Node's file loading lives in src/node/loadKernels.ts so this file stays free of Node
// built-ins.
import type { KernelAbi, KernelName, Ptr } from "./kernelAbi.js";

const PAGE = 65536;

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
