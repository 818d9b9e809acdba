// The arena planner: a bump allocator over the kernel module's memory. The host plans every
// tensor's offset once per (model, batch size); training steps and predictions then only pass
// these offsets to kernels, so they allocate nothing.

/** 64-byte alignment: a cache line, and a multiple of the 16 bytes f32x4 loads like. */
export const ALIGN = 64;

export function alignUp(n: number, a = ALIGN): number {
  return Math.ceil(n / a) * a;
}

export class ArenaPlanner {
  private cursor: number;
  readonly regions: { name: string; ptr: number; bytes: number }[] = [];

  constructor(readonly base: number) {
    this.cursor = alignUp(base);
  }

  /** Reserves `bytes` and returns the byte offset. Zero-sized requests still get a distinct slot. */
  take(name: string, bytes: number): number {
    if (!Number.isFinite(bytes) || bytes < 0)
      throw new RangeError(`arena: bad size ${bytes} for ${name}`);
    const ptr = this.cursor;
    this.cursor = alignUp(ptr + Math.max(bytes, 4));
    this.regions.push({ name, ptr, bytes });
    return ptr;
  }

  f32(name: string, count: number): number {
    return this.take(name, count * 4);
  }

  i32(name: string, count: number): number {
    return this.take(name, count * 4);
  }

  get end(): number {
    return this.cursor;
  }
}
