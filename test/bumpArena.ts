// Shared by the GEMM, Dense and Conv2D kernel tests: a seeded PRNG and a bump allocator over
// kernel memory with guard floats after every scratch buffer.
import { expect } from "vitest";
import type { Kernels } from "../src/kernels.js";

/** mulberry32: a tiny seeded PRNG, floats in [-1, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

const SCRATCH_GUARD = -98765.25;

/** Bump allocator over the kernel memory, 64-byte aligned like the host arena. */
export class Bump {
  private cursor: number;
  constructor(private readonly k: Kernels) {
    this.cursor = k.heapBase;
  }
  floats(n: number): number {
    const p = this.cursor;
    this.cursor = Math.ceil((p + Math.max(n, 1) * 4) / 64) * 64;
    this.k.ensure(this.cursor);
    return p;
  }
  bytes(n: number): number {
    return this.floats(Math.ceil(n / 4));
  }
  private readonly guards: number[] = [];
  /** Scratch of exactly the size a *_scratch_bytes function asked for, followed by guard floats. */
  scratch(n: number): number {
    const floats = Math.ceil(n / 4);
    const p = this.floats(floats + 64);
    const g = (p >> 2) + floats;
    this.k.f32.fill(SCRATCH_GUARD, g, g + 64);
    this.guards.push(g);
    return p;
  }
  /** Fails when a kernel wrote past the scratch it declared it needs. */
  expectScratchGuards(what: string): void {
    const f = this.k.f32;
    for (const g of this.guards) {
      for (let i = 0; i < 64; i++) {
        if (f[g + i] !== SCRATCH_GUARD)
          expect.fail(`${what}: wrote past its scratch (+${i * 4} bytes)`);
      }
    }
  }
  random(n: number, r: () => number): number {
    const p = this.floats(n);
    const f = this.k.f32;
    for (let i = 0; i < n; i++) f[(p >> 2) + i] = r();
    return p;
  }
}
