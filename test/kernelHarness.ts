// Test harness for the kernel tests: a bump arena with guard words around every buffer (to catch
// stray writes and tail overruns), seeded data, and closeness checks that name the first bad index.
import { expect } from "vitest";
import type { Kernels } from "../src/kernels.js";
import { loadKernels } from "../src/node/loadKernels.js";

/** Guard words on each side of every buffer; a kernel writing one of them overran. */
const GUARD_WORDS = 4;
/** A NaN bit pattern no kernel produces (compared as bits, so NaN != NaN does not matter). */
const SENTINEL = 0x7fa5_c3e1 | 0;

/** mulberry32: seeded floats in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n floats uniform in [lo, hi), rounded to f32. */
export function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

/** n standard normal floats (Box-Muller), times scale plus shift. */
export function normal(n: number, seed: number, scale = 1, shift = 0): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - r();
    a[i] = shift + scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return a;
}

interface Region {
  ptr: number;
  n: number;
  label: string;
}

/**
 * Bump allocator over a fresh kernel instance. Buffers are 16-byte aligned (the host arena aligns
 * to 64) unless `misalign` floats are asked for, which exercises unaligned v128 loads.
 */
export class TestArena {
  readonly k: Kernels;
  private cursor: number;
  private regions: Region[] = [];

  constructor(k: Kernels = loadKernels()) {
    this.k = k;
    this.cursor = k.heapBase;
  }

  get abi(): Kernels["abi"] {
    return this.k.abi;
  }

  /** Frees everything (guards included). */
  reset(): void {
    this.cursor = this.k.heapBase;
    this.regions = [];
  }

  private take(n: number, label: string, misalign: number): number {
    const start = Math.ceil(this.cursor / 64) * 64;
    const ptr = start + (GUARD_WORDS + misalign) * 4;
    const end = ptr + (n + GUARD_WORDS) * 4;
    this.k.ensure(end);
    const i32 = this.k.i32;
    for (let g = 0; g < GUARD_WORDS + misalign; g++) i32[(start >> 2) + g] = SENTINEL;
    for (let g = 0; g < GUARD_WORDS; g++) i32[(ptr >> 2) + n + g] = SENTINEL;
    this.regions.push({ ptr, n, label });
    this.cursor = end;
    return ptr;
  }

  /** n floats, initialised from `init` (array or fill value; default a sentinel-free 0). */
  f32(n: number, init: ArrayLike<number> | number = 0, label = "f32", misalign = 0): number {
    const p = this.take(n, label, misalign);
    if (typeof init === "number") this.k.f32.fill(init, p >> 2, (p >> 2) + n);
    else this.k.f32.set(init, p >> 2);
    return p;
  }

  i32(n: number, init: ArrayLike<number> | number = 0, label = "i32"): number {
    const p = this.take(n, label, 0);
    if (typeof init === "number") this.k.i32.fill(init, p >> 2, (p >> 2) + n);
    else this.k.i32.set(init, p >> 2);
    return p;
  }

  read(p: number, n: number): Float32Array {
    return this.k.readF32(p, n);
  }

  readI32(p: number, n: number): Int32Array {
    return this.k.i32.slice(p >> 2, (p >> 2) + n);
  }

  write(p: number, data: ArrayLike<number>): void {
    this.k.writeF32(p, data);
  }

  /** Every guard word is intact. */
  expectGuards(context = ""): void {
    const i32 = this.k.i32;
    const broken: string[] = [];
    for (const r of this.regions) {
      const base = r.ptr >> 2;
      for (let g = 1; g <= GUARD_WORDS; g++) {
        if (i32[base - g] !== SENTINEL) broken.push(`${r.label}[-${g}]`);
        if (i32[base + r.n + g - 1] !== SENTINEL) broken.push(`${r.label}[n+${g - 1}]`);
      }
    }
    expect(broken, `guard words overwritten ${context}`).toEqual([]);
  }
}

export interface Tol {
  rtol: number;
  /** absolute tolerance, or one per element (for outputs whose conditioning varies) */
  atol: number | ArrayLike<number>;
}

/**
 * |actual - expected| <= atol + rtol*|expected| everywhere (NaN only where expected is NaN);
 * the failure message names the first offending index and the worst error.
 */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tol,
  what = "",
): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let first = -1;
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    let bad: boolean;
    if (Number.isNaN(e) || Number.isNaN(a)) bad = !(Number.isNaN(e) && Number.isNaN(a));
    else if (!Number.isFinite(e) || !Number.isFinite(a)) bad = a !== e;
    else {
      const atol = typeof tol.atol === "number" ? tol.atol : tol.atol[i];
      const err = Math.abs(a - e) / (atol + tol.rtol * Math.abs(e));
      if (err > worst) {
        worst = err;
        worstAt = i;
      }
      bad = err > 1;
    }
    if (bad && first < 0) first = i;
  }
  const msg =
    first < 0
      ? "ok"
      : `${what}: first mismatch at [${first}]: got ${actual[first]}, want ${expected[first]}` +
        (worstAt >= 0
          ? `; worst at [${worstAt}] (${actual[worstAt]} vs ${expected[worstAt]}, ${worst.toFixed(2)}x tol)`
          : "");
  expect(msg).toBe("ok");
}

/** Bitwise equality of two f32 arrays (NaN payloads included), naming the first difference. */
export function expectSameBits(actual: Float32Array, expected: Float32Array, what = ""): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const a = new Int32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Int32Array(expected.buffer, expected.byteOffset, expected.length);
  let first = -1;
  for (let i = 0; i < a.length && first < 0; i++) if (a[i] !== e[i]) first = i;
  const msg =
    first < 0 ? "ok" : `${what}: differs at [${first}]: ${actual[first]} vs ${expected[first]}`;
  expect(msg).toBe("ok");
}

/** Sizes that cover empty, sub-vector, exact-vector and tail cases of 4-wide SIMD loops. */
export const TAIL_SIZES = [0, 1, 3, 4, 5, 7, 8, 9, 31, 1000];

/**
 * Central finite difference of f at each index of `x` (perturbing in place, restoring after):
 * (f(x + h e_i) - f(x - h e_i)) / 2h, with f evaluated by the kernel and summed in float64.
 */
export function finiteDiff(x: Float32Array, f: (x: Float32Array) => number, h: number): number[] {
  const g: number[] = [];
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    x[i] = v + h;
    const up = f(x);
    x[i] = v - h;
    const down = f(x);
    x[i] = v;
    // The f32-rounded step actually taken, so the quotient is not biased by rounding of v +- h.
    const step = Math.fround(v + h) - Math.fround(v - h);
    g.push((up - down) / step);
  }
  return g;
}

/** Σ a_i b_i in float64. */
export function dot64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
