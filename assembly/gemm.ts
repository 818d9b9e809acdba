// GEMM: C[M,N] = clamp(A[M,K] . B[K,N] (+ C) (+ bias[N]), lo, hi) for any element strides of A and
// B, so one kernel serves NN (forward), NT (dX = dY.W^T) and TN (dW = X^T.dY).
//
// Structure (GotoBLAS/XNNPACK style, sized for WASM SIMD's 16 xmm registers on x86-64):
//   for each slice of K (ceil(K/KC) slices of equal depth, sliceDepth):
//     pack B[kc, N] into 8-column panels   packedB[N8/8][kc][8]  (zero-padded columns)
//     for each MC-row block of M:
//       pack A[mc, kc] into 4-row panels   packedA[M4/4][kc][4]  (zero-padded rows)
//       for each B panel, for each A panel: the 4x8 micro-kernel.
// The 4x8 tile keeps 8 f32x4 accumulators + 2 B vectors + 1 A splat in registers; a 6x8 tile needs
// 15 and V8 spills, halving the speed. Packing makes every transpose pattern read contiguous
// memory in the micro-kernel, so NT and TN run near NN speed. WASM SIMD has no FMA, so each step
// is a mul and an add: 16 flops per f32x4 pair. The relaxed-SIMD build (isa.ts) makes each
// Isa.madd one relaxed_madd (an FMA where the CPU has one) from this same source.
//
// Bias, accumulate and the clamp are applied in the store of the last K slice (fused epilogue):
// a folded Dense + ReLU is one call. Earlier slices store raw partial sums into C.
//
// Row-major B (NN) with two or more full panels is not packed in a pass of its own: while the
// first row block's tiles run on panel p, each copies its share of panel p + 1's rows from B, so
// those strided loads from L2/L3 overlap arithmetic (64x784x256: ~3-5% faster than a pass of its
// own). Spread over all the tiles rather than done by the first tile alone, the copy gained 0-2
// points of the peak in the best windows and 2-6% in the median ones (64x784x256 and 512^3,
// interleaved A/B, three runs), the other training shapes within noise.
//
// Small M (inference batches) with row-major B skips packing B, whose elements are used only M
// times: M <= 2 runs a row kernel (1 x 32 columns), M <= 8 reads full B panels in place.
//
// On the development machine (AMD EPYC Zen 3, Node 20) the mul+add peak of one core is
// ~50-52 GFLOP/s (simd_peak_f32); the baseline packed path reaches ~35-37 GFLOP/s at 64x256x784,
// ~70% of it. Loads bound it, not arithmetic: per k step the 4x8 tile has 2 B loads and 4 A splats
// beside its 8 muls and 8 adds, and alone in L1 it runs at ~70% of the peak, against ~94% with
// the A splats held in registers (2 loads a step) and ~77% with B held (4 loads). With a mul and
// an add per product every tile needs a temporary, and x64's 16 xmm registers (V8 keeps one for
// itself) leave no faster tile here (2x16 ~69%, 3x12 ~60%, 5x8 spills, A pre-broadcast ~68%).
// Relaxed build (FMA): peak ~50-51 GFLOP/s (simd_peak_madd_f32), packed GEMM ~86-90% of it, 1.25-1.4x
// the baseline, the batch-1 row kernel unchanged (it streams B from L2, loads not flops bound it). The
// 4x8 tile stays: with FMA its 8 accumulators exactly cover 2 pipes x 4 cycles of latency, and in
// L1 it reaches ~48-50 GFLOP/s; a 6x8 FMA tile (12 accumulators, no mul temporaries) measured ~36.
// On Zen 5 (the project's machine from 2026-11-27; 8-wide dispatch, 4 load pipes) the same baseline
// tile runs at 94-97% of a ~61-65 GFLOP/s mul+add peak (npm run bench, six runs): the loads no
// longer bound it, and the relaxed build's FMA gains nothing there (0.97-1.00x).

import { Isa } from "./isa";

/**
 * Deepest packed K slice: the B micro-panel (kc x 8 floats, <= 10 KB) stays in L1 across A panels.
 * K is cut into equal slices of at most this depth (sliceDepth), not KC-sized ones plus a sliver.
 */
const KC: i32 = 320;
/** Rows of A packed at once: the packed A block (MC x KC floats = 128 KB) stays in L2. */
const MC: i32 = 128;
/** Columns of B packed at once; bounds scratch at KC x NC floats = 1 MB for wide matrices. */
const NC: i32 = 1024;
/**
 * Up to this many rows of A, full 8-column panels of a row-major B are read in place instead of
 * packed: each B element is used only M times, so copying it would cost as much as using it
 * (batch-1 inference: M = 1).
 */
const DIRECT_B_MAX_M: i32 = 8;
/** Bytes of the edge tile (4x8 floats) where partial tiles are staged for their scalar store. */
const TILE_BYTES: usize = 128;

function minI32(a: i32, b: i32): i32 {
  return a < b ? a : b;
}

/**
 * Depth of every K slice but the last: K in ceil(K / KC) near-equal slices (784 -> 3 x 262
 * instead of 256 + 256 + 256 + 16, whose sliver pays a full C round trip for 16 k-steps).
 * Every path slices K this way, so a row gets the same bits whichever path computes it.
 */
function sliceDepth(K: i32): i32 {
  if (K <= KC) return max(K, 1);
  const n = (K + KC - 1) / KC;
  return (K + n - 1) / n;
}

function roundUp(n: i32, m: i32): i32 {
  return ((n + m - 1) / m) * m;
}

/** Rounds a host scratch pointer up to 64 bytes so packed panels sit on cache lines. */
function alignScratch(p: usize): usize {
  return (p + 63) & ~(<usize>63);
}

/** Bytes of scratch gemm_f32 needs for an M x N x K product (packing buffers + edge tile + alignment). */
export function gemm_scratch_bytes(M: i32, N: i32, K: i32): i32 {
  const kc = sliceDepth(K);
  const mc = roundUp(max(1, minI32(M, MC)), 4);
  const nc = roundUp(max(1, minI32(N, NC)), 8);
  return 64 + <i32>TILE_BYTES + (mc + nc) * kc * 4;
}

// ---- packing -------------------------------------------------------------------------------------

/** 4x4 transpose of rows r0..r3 into columns, stored at dst, dst+s, dst+2s, dst+3s. */
function storeTransposed4x4(r0: v128, r1: v128, r2: v128, r3: v128, dst: usize, s: usize): void {
  const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
  const t2 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7);
  const t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
  v128.store(dst, v128.shuffle<f32>(t0, t1, 0, 1, 4, 5));
  v128.store(dst + s, v128.shuffle<f32>(t0, t1, 2, 3, 6, 7));
  v128.store(dst + 2 * s, v128.shuffle<f32>(t2, t3, 0, 1, 4, 5));
  v128.store(dst + 3 * s, v128.shuffle<f32>(t2, t3, 2, 3, 6, 7));
}

/**
 * packedB[nc/8 panels][kc][8] <- B[0:kc, 0:nc] (element (k,j) at B + 4*(k*rsB + j*csB)); columns
 * past nc are zero so the micro-kernel never branches on the N tail.
 */
function packB(kc: i32, nc: i32, B: usize, rsB: i32, csB: i32, dst: usize): void {
  const rs = (<usize>rsB) << 2;
  const cs = (<usize>csB) << 2;
  const panelBytes = (<usize>kc) << 5;
  for (let j0 = 0; j0 < nc; j0 += 8) {
    const nr = minI32(8, nc - j0);
    const src = B + <usize>j0 * cs;
    const panel = dst + <usize>(j0 >> 3) * panelBytes;
    if (nc - j0 >= 16 && csB == 1) {
      // NN, two panels at once: each row's 16 floats (a cache line when aligned) read in one go,
      // instead of the same line fetched again for the second panel after a pass over K.
      const panel2 = panel + panelBytes;
      for (let k = 0; k < kc; k++) {
        const s = src + <usize>k * rs;
        const o = (<usize>k) << 5;
        v128.store(panel + o, v128.load(s));
        v128.store(panel + o, v128.load(s, 16), 16);
        v128.store(panel2 + o, v128.load(s, 32));
        v128.store(panel2 + o, v128.load(s, 48), 16);
      }
      j0 += 8;
    } else if (nr == 8 && csB == 1) {
      // Rows of B are contiguous (NN): two vector copies per k.
      for (let k = 0; k < kc; k++) {
        const s = src + <usize>k * rs;
        const d = panel + ((<usize>k) << 5);
        v128.store(d, v128.load(s));
        v128.store(d, v128.load(s, 16), 16);
      }
    } else if (nr == 8 && rsB == 1) {
      // Columns of B are contiguous (NT, B = W^T): transpose 4x4 blocks.
      let k = 0;
      for (; k + 4 <= kc; k += 4) {
        const s = src + ((<usize>k) << 2);
        const d = panel + ((<usize>k) << 5);
        storeTransposed4x4(
          v128.load(s),
          v128.load(s + cs),
          v128.load(s + 2 * cs),
          v128.load(s + 3 * cs),
          d,
          32,
        );
        const s4 = s + 4 * cs;
        storeTransposed4x4(
          v128.load(s4),
          v128.load(s4 + cs),
          v128.load(s4 + 2 * cs),
          v128.load(s4 + 3 * cs),
          d + 16,
          32,
        );
      }
      for (; k < kc; k++) {
        const s = src + ((<usize>k) << 2);
        const d = panel + ((<usize>k) << 5);
        for (let j = 0; j < 8; j++) store<f32>(d + ((<usize>j) << 2), load<f32>(s + <usize>j * cs));
      }
    } else {
      // Generic strides or the N tail: scalar gather, zero padding.
      for (let k = 0; k < kc; k++) {
        const s = src + <usize>k * rs;
        const d = panel + ((<usize>k) << 5);
        let j = 0;
        for (; j < nr; j++) store<f32>(d + ((<usize>j) << 2), load<f32>(s + <usize>j * cs));
        for (; j < 8; j++) store<f32>(d + ((<usize>j) << 2), 0);
      }
    }
  }
}

/**
 * packedA[mc/4 panels][kc][4] <- A[0:mc, 0:kc] (element (i,k) at A + 4*(i*rsA + k*csA)); rows past
 * mc are zero.
 */
function packA(mc: i32, kc: i32, A: usize, rsA: i32, csA: i32, dst: usize): void {
  const rs = (<usize>rsA) << 2;
  const cs = (<usize>csA) << 2;
  const panelBytes = (<usize>kc) << 4;
  for (let i0 = 0; i0 < mc; i0 += 4) {
    const mr = minI32(4, mc - i0);
    const src = A + <usize>i0 * rs;
    const panel = dst + <usize>(i0 >> 2) * panelBytes;
    if (mr == 4 && rsA == 1) {
      // A^T stored row-major (TN): the 4 rows at one k are contiguous.
      for (let k = 0; k < kc; k++) {
        v128.store(panel + ((<usize>k) << 4), v128.load(src + <usize>k * cs));
      }
    } else if (mr == 4 && csA == 1) {
      // Row-major A: 4 k-values of 4 rows, transposed.
      let k = 0;
      for (; k + 4 <= kc; k += 4) {
        const s = src + ((<usize>k) << 2);
        storeTransposed4x4(
          v128.load(s),
          v128.load(s + rs),
          v128.load(s + 2 * rs),
          v128.load(s + 3 * rs),
          panel + ((<usize>k) << 4),
          16,
        );
      }
      for (; k < kc; k++) {
        const s = src + ((<usize>k) << 2);
        const d = panel + ((<usize>k) << 4);
        for (let i = 0; i < 4; i++) store<f32>(d + ((<usize>i) << 2), load<f32>(s + <usize>i * rs));
      }
    } else {
      for (let k = 0; k < kc; k++) {
        const s = src + <usize>k * cs;
        const d = panel + ((<usize>k) << 4);
        let i = 0;
        for (; i < mr; i++) store<f32>(d + ((<usize>i) << 2), load<f32>(s + <usize>i * rs));
        for (; i < 4; i++) store<f32>(d + ((<usize>i) << 2), 0);
      }
    }
  }
}

// ---- micro-kernel --------------------------------------------------------------------------------

/** Epilogue of one full 8-wide row: (+C) (+bias) then clamp, two vector stores. */
function storeRow8(
  c: usize,
  x0: v128,
  x1: v128,
  addC: bool,
  last: bool,
  bias0: v128,
  bias1: v128,
  lo: v128,
  hi: v128,
): void {
  if (addC) {
    x0 = f32x4.add(x0, v128.load(c));
    x1 = f32x4.add(x1, v128.load(c, 16));
  }
  if (last) {
    // pmax(x, lo) keeps NaN (the comparison is false), so a diverging model stays visible.
    x0 = f32x4.pmin(f32x4.pmax(f32x4.add(x0, bias0), lo), hi);
    x1 = f32x4.pmin(f32x4.pmax(f32x4.add(x1, bias1), lo), hi);
  }
  v128.store(c, x0);
  v128.store(c, x1, 16);
}

/** All micro-tiles of an mc x nc block of C from packed A and B panels (kc deep). */
function macroKernel(
  mc: i32,
  nc: i32,
  kc: i32,
  packedA: usize,
  packedB: usize,
  bPanelBytes: usize,
  bDirect: usize,
  bDirectStep: usize,
  fuseSrc: usize,
  fuseStep: usize,
  C: usize,
  ldc: i32,
  bias: usize,
  addC: bool,
  last: bool,
  lo: f32,
  hi: f32,
  tile: usize,
): void {
  const ldcBytes = (<usize>ldc) << 2;
  const aPanelBytes = (<usize>kc) << 4;
  // Full panels the tiles pack on the way (fused packing, see gemm_f32): panel p + 1 is copied
  // from fuseSrc while panel p's tiles run, fuseChunk rows of it by each tile (i0 / 4).
  const fuseEnd = fuseSrc != 0 ? nc & ~7 : 0;
  const tiles = (mc + 3) >> 2;
  const fuseChunk = (kc + tiles - 1) / tiles;
  for (let j0 = 0; j0 < nc; j0 += 8) {
    const nr = minI32(8, nc - j0);
    // B panel: in place (row stride bDirectStep) when the caller asked for it and the panel is
    // full, else packed (8 floats per k).
    let pb = packedB + <usize>(j0 >> 3) * bPanelBytes;
    let bStep: usize = 32;
    if (bDirect != 0 && nr == 8) {
      pb = bDirect + ((<usize>j0) << 2);
      bStep = bDirectStep;
    }
    const biasJ: usize = bias != 0 ? bias + ((<usize>j0) << 2) : 0;
    for (let i0 = 0; i0 < mc; i0 += 4) {
      const mr = minI32(4, mc - i0);
      const pa = packedA + <usize>(i0 >> 2) * aPanelBytes;
      const c = C + <usize>i0 * ldcBytes + ((<usize>j0) << 2);
      // ---- the 4x8 micro-kernel (written in place: a call per tile measured ~3% slower) ----
      let c00 = f32x4.splat(0);
      let c01 = c00;
      let c10 = c00;
      let c11 = c00;
      let c20 = c00;
      let c21 = c00;
      let c30 = c00;
      let c31 = c00;
      let a = pa;
      let b = pb;
      const aEnd = pa + ((<usize>kc) << 4);
      if (j0 + 16 <= fuseEnd) {
        // The same loop for this tile's first k-steps, also copying rows [k0, k1) of the next B
        // panel from B into its packed slot: its loads from L2/L3 overlap this tile's arithmetic
        // instead of a pass of their own. A second copy of the k-step on purpose: a copy flag
        // tested inside one loop would cost every k-step an instruction or four.
        const k0 = minI32(kc, (i0 >> 2) * fuseChunk);
        const k1 = minI32(kc, k0 + fuseChunk);
        let src = fuseSrc + ((<usize>(j0 + 8)) << 2) + <usize>k0 * fuseStep;
        let dst = pb + bPanelBytes + ((<usize>k0) << 5);
        const copyEnd = a + ((<usize>(k1 - k0)) << 4);
        while (a < copyEnd) {
          v128.store(dst, v128.load(src));
          v128.store(dst, v128.load(src, 16), 16);
          const b0 = v128.load(b);
          const b1 = v128.load(b, 16);
          let av = v128.load32_splat(a);
          c00 = Isa.madd(av, b0, c00);
          c01 = Isa.madd(av, b1, c01);
          av = v128.load32_splat(a, 4);
          c10 = Isa.madd(av, b0, c10);
          c11 = Isa.madd(av, b1, c11);
          av = v128.load32_splat(a, 8);
          c20 = Isa.madd(av, b0, c20);
          c21 = Isa.madd(av, b1, c21);
          av = v128.load32_splat(a, 12);
          c30 = Isa.madd(av, b0, c30);
          c31 = Isa.madd(av, b1, c31);
          a += 16;
          b += 32;
          src += fuseStep;
          dst += 32;
        }
      }
      // One k-step per trip: with two, TurboFan hoists all 12 loads of both steps to the top and
      // spills accumulators (measured 16 vs 28 GFLOP/s at 64x256x784).
      while (a < aEnd) {
        const b0 = v128.load(b);
        const b1 = v128.load(b, 16);
        let av = v128.load32_splat(a);
        c00 = Isa.madd(av, b0, c00);
        c01 = Isa.madd(av, b1, c01);
        av = v128.load32_splat(a, 4);
        c10 = Isa.madd(av, b0, c10);
        c11 = Isa.madd(av, b1, c11);
        av = v128.load32_splat(a, 8);
        c20 = Isa.madd(av, b0, c20);
        c21 = Isa.madd(av, b1, c21);
        av = v128.load32_splat(a, 12);
        c30 = Isa.madd(av, b0, c30);
        c31 = Isa.madd(av, b1, c31);
        a += 16;
        b += bStep;
      }

      if (mr == 4 && nr == 8) {
        let bias0 = f32x4.splat(0);
        let bias1 = bias0;
        if (last && biasJ != 0) {
          bias0 = v128.load(biasJ);
          bias1 = v128.load(biasJ, 16);
        }
        const vlo = f32x4.splat(lo);
        const vhi = f32x4.splat(hi);
        storeRow8(c, c00, c01, addC, last, bias0, bias1, vlo, vhi);
        storeRow8(c + ldcBytes, c10, c11, addC, last, bias0, bias1, vlo, vhi);
        storeRow8(c + 2 * ldcBytes, c20, c21, addC, last, bias0, bias1, vlo, vhi);
        storeRow8(c + 3 * ldcBytes, c30, c31, addC, last, bias0, bias1, vlo, vhi);
      } else {
        // Partial tile (M or N tail): stage in the edge tile, store only the mr x nr valid elements.
        v128.store(tile, c00);
        v128.store(tile, c01, 16);
        v128.store(tile, c10, 32);
        v128.store(tile, c11, 48);
        v128.store(tile, c20, 64);
        v128.store(tile, c21, 80);
        v128.store(tile, c30, 96);
        v128.store(tile, c31, 112);
        for (let i = 0; i < mr; i++) {
          const crow = c + <usize>i * ldcBytes;
          const trow = tile + ((<usize>i) << 5);
          for (let j = 0; j < nr; j++) {
            let v = load<f32>(trow + ((<usize>j) << 2));
            if (addC) v += load<f32>(crow + ((<usize>j) << 2));
            if (last) {
              if (biasJ != 0) v += load<f32>(biasJ + ((<usize>j) << 2));
              v = v < lo ? lo : v;
              v = hi < v ? hi : v;
            }
            store<f32>(crow + ((<usize>j) << 2), v);
          }
        }
      }
    }
  }
}

/**
 * C[M,N] for M <= 2 and row-major B (batch-1 inference): one row of A at a time against 24 columns
 * of B read in place (6 accumulators, one splat of A per k; with 8 and their 8 loads V8 runs out
 * of xmm registers and keeps one on the stack). The 4x8 tile would compute 3 wasted rows per real
 * one here, and packing B would copy each element to use it M times. K goes in the same slices
 * (sliceDepth) with the same epilogue as the tile path, so a row computed here has the same bits
 * as in a batch: full 8-column groups end like storeRow8, the N % 8 tail like the partial tile.
 * gemmRowsPacked is the same loop over pre-packed panels; one function taking the row and panel
 * steps as arguments measured 3-10% slower at batch 1 (constant steps become registers).
 */
function gemmRows(
  M: i32,
  N: i32,
  K: i32,
  A: usize,
  rsA: i32,
  csA: i32,
  B: usize,
  rsB: i32,
  C: usize,
  ldc: i32,
  bias: usize,
  lo: f32,
  hi: f32,
  accumulate: i32,
  scratch: usize,
): void {
  const tile = alignScratch(scratch);
  const aStep = (<usize>csA) << 2;
  const bStep = (<usize>rsB) << 2;
  const kcMax = sliceDepth(K);
  const nFull = N & ~7;
  for (let i = 0; i < M; i++) {
    const aRow = A + ((<usize>i * <usize>rsA) << 2);
    const cRow = C + ((<usize>i * <usize>ldc) << 2);
    for (let j0 = 0; j0 < nFull; j0 += 24) {
      const groups = minI32(3, (nFull - j0) >> 3);
      const c = cRow + ((<usize>j0) << 2);
      const bj: usize = bias != 0 ? bias + ((<usize>j0) << 2) : 0;
      let pc = 0;
      do {
        const kc = minI32(kcMax, K - pc);
        const addC = pc > 0 || accumulate != 0;
        const last = pc + kc >= K;
        let x0 = f32x4.splat(0);
        let x1 = x0;
        let x2 = x0;
        let x3 = x0;
        let x4 = x0;
        let x5 = x0;
        let a = aRow + <usize>pc * aStep;
        const aEnd = a + <usize>kc * aStep;
        let b = B + <usize>pc * bStep + ((<usize>j0) << 2);
        if (groups == 3) {
          while (a < aEnd) {
            const av = v128.load32_splat(a);
            x0 = Isa.madd(av, v128.load(b), x0);
            x1 = Isa.madd(av, v128.load(b, 16), x1);
            x2 = Isa.madd(av, v128.load(b, 32), x2);
            x3 = Isa.madd(av, v128.load(b, 48), x3);
            x4 = Isa.madd(av, v128.load(b, 64), x4);
            x5 = Isa.madd(av, v128.load(b, 80), x5);
            a += aStep;
            b += bStep;
          }
        } else if (groups == 2) {
          while (a < aEnd) {
            const av = v128.load32_splat(a);
            x0 = Isa.madd(av, v128.load(b), x0);
            x1 = Isa.madd(av, v128.load(b, 16), x1);
            x2 = Isa.madd(av, v128.load(b, 32), x2);
            x3 = Isa.madd(av, v128.load(b, 48), x3);
            a += aStep;
            b += bStep;
          }
        } else {
          while (a < aEnd) {
            const av = v128.load32_splat(a);
            x0 = Isa.madd(av, v128.load(b), x0);
            x1 = Isa.madd(av, v128.load(b, 16), x1);
            a += aStep;
            b += bStep;
          }
        }
        finish8(c, x0, x1, 8, addC, last, bj, lo, hi, tile);
        if (groups > 1) finish8(c + 32, x2, x3, 8, addC, last, bj != 0 ? bj + 32 : 0, lo, hi, tile);
        if (groups > 2) finish8(c + 64, x4, x5, 8, addC, last, bj != 0 ? bj + 64 : 0, lo, hi, tile);
        pc += kc;
      } while (pc < K);
    }
    // The N % 8 tail, one column at a time (reading 8 would run past B's rows), same slices.
    for (let j = nFull; j < N; j++) {
      const c = cRow + ((<usize>j) << 2);
      let pc = 0;
      do {
        const kc = minI32(kcMax, K - pc);
        const addC = pc > 0 || accumulate != 0;
        const last = pc + kc >= K;
        let sum: f32 = 0;
        let a = aRow + <usize>pc * aStep;
        const aEnd = a + <usize>kc * aStep;
        let b = B + <usize>pc * bStep + ((<usize>j) << 2);
        while (a < aEnd) {
          sum = Isa.maddScalar(load<f32>(a), load<f32>(b), sum);
          a += aStep;
          b += bStep;
        }
        if (addC) sum += load<f32>(c);
        if (last) {
          if (bias != 0) sum += load<f32>(bias + ((<usize>j) << 2));
          sum = sum < lo ? lo : sum;
          sum = hi < sum ? hi : sum;
        }
        store<f32>(c, sum);
        pc += kc;
      } while (pc < K);
    }
  }
}

/**
 * C[M,N] = clamp(A[M,K].B[K,N] (+C if accumulate) (+bias[N] if bias != 0), lo, hi).
 * A(i,k) at A + 4*(i*rsA + k*csA); B(k,j) at B + 4*(k*rsB + j*csB); C row stride ldc floats.
 * scratch: gemm_scratch_bytes(M,N,K) bytes.
 */
export function gemm_f32(
  M: i32,
  N: i32,
  K: i32,
  A: usize,
  rsA: i32,
  csA: i32,
  B: usize,
  rsB: i32,
  csB: i32,
  C: usize,
  ldc: i32,
  bias: usize,
  lo: f32,
  hi: f32,
  accumulate: i32,
  scratch: usize,
): void {
  if (M <= 0 || N <= 0) return;
  // Measured at 784->256: M=1 15.9 vs 5.7 GFLOP/s, M=2 15.3 vs 11.6, M=3 16.0 vs 17.5.
  if (M <= 2 && csB == 1) {
    gemmRows(M, N, K, A, rsA, csA, B, rsB, C, ldc, bias, lo, hi, accumulate, scratch);
    return;
  }
  const tile = alignScratch(scratch);
  const packedA = tile + TILE_BYTES;
  const kcMax = sliceDepth(K);
  const packedB = packedA + <usize>(roundUp(max(1, minI32(M, MC)), 4) * kcMax) * 4;
  const aRow = (<usize>rsA) << 2;
  const aCol = (<usize>csA) << 2;
  const bRow = (<usize>rsB) << 2;
  const bCol = (<usize>csB) << 2;
  const direct = csB == 1 && M <= DIRECT_B_MAX_M;
  for (let jc = 0; jc < N; jc += NC) {
    const nc = minI32(NC, N - jc);
    // NN with at least two full panels in this block: B is packed inside the first row block's
    // tiles (macroKernel), all but the first panel and the N tail.
    const fuse = !direct && csB == 1 && nc >= 16;
    // At least one slice even when K == 0, so the epilogue (C = clamp(bias)) still runs.
    let pc = 0;
    do {
      const kc = minI32(kcMax, K - pc);
      const last = pc + kc >= K;
      const addC = pc > 0 || accumulate != 0;
      const bSlice = B + <usize>pc * bRow + <usize>jc * bCol;
      if (direct || fuse) {
        // Only the N tail (nc % 8 columns) is packed, into its panel's slot, and with fused
        // packing the first panel (the tiles of each full panel pack the next one).
        if (fuse) packB(kc, 8, bSlice, rsB, csB, packedB);
        const nFull = nc & ~7;
        if (nFull < nc) {
          packB(
            kc,
            nc - nFull,
            bSlice + <usize>nFull * bCol,
            rsB,
            csB,
            packedB + <usize>(nFull >> 3) * ((<usize>kc) << 5),
          );
        }
      } else {
        packB(kc, nc, bSlice, rsB, csB, packedB);
      }
      for (let ic = 0; ic < M; ic += MC) {
        const mc = minI32(MC, M - ic);
        packA(mc, kc, A + <usize>ic * aRow + <usize>pc * aCol, rsA, csA, packedA);
        macroKernel(
          mc,
          nc,
          kc,
          packedA,
          packedB,
          (<usize>kc) << 5,
          direct ? bSlice : 0,
          bRow,
          fuse && ic == 0 ? bSlice : 0,
          bRow,
          C + ((<usize>ic * <usize>ldc + <usize>jc) << 2),
          ldc,
          bias != 0 ? bias + ((<usize>jc) << 2) : 0,
          addC,
          last,
          lo,
          hi,
          tile,
        );
      }
      pc += kc;
    } while (pc < K);
  }
}

// ---- pre-packed B (inference: weights packed once at model load) -----------------------------------

/** Floats of a pre-packed K x N matrix: 8-column panels over the whole depth, zero-padded. */
export function gemm_packed_b_floats(K: i32, N: i32): i32 {
  return roundUp(max(N, 1), 8) * max(K, 1);
}

/**
 * Packs B[K,N] (element (k,j) at B + 4*(k*rsB + j*csB)) once into dst[N8/8][K][8] for
 * gemm_f32_prepacked: the layout the micro-kernel reads (any KC slice of a panel is contiguous)
 * and, four panels side by side, the batch-1 row kernel's sequential streams.
 */
export function gemm_pack_b_f32(K: i32, N: i32, B: usize, rsB: i32, csB: i32, dst: usize): void {
  if (K <= 0 || N <= 0) return;
  packB(K, N, B, rsB, csB, dst);
}

/**
 * gemm_f32 with B pre-packed by gemm_pack_b_f32 (same epilogue and arguments, B's strides
 * replaced by the packed matrix): an inference batch skips packing the weights on every call, and
 * batch 1 reads them as 4 sequential streams instead of 1 KB-strided rows. scratch:
 * gemm_scratch_bytes(M,N,K) bytes.
 */
export function gemm_f32_prepacked(
  M: i32,
  N: i32,
  K: i32,
  A: usize,
  rsA: i32,
  csA: i32,
  P: usize,
  C: usize,
  ldc: i32,
  bias: usize,
  lo: f32,
  hi: f32,
  accumulate: i32,
  scratch: usize,
): void {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    // No products: C = clamp((C) + bias) through the generic path (nothing to read from P).
    gemm_f32(M, N, K, A, rsA, csA, P, 0, 1, C, ldc, bias, lo, hi, accumulate, scratch);
    return;
  }
  if (M <= 2) {
    gemmRowsPacked(M, N, K, A, rsA, csA, P, C, ldc, bias, lo, hi, accumulate, scratch);
    return;
  }
  const tile = alignScratch(scratch);
  const packedA = tile + TILE_BYTES;
  const aRow = (<usize>rsA) << 2;
  const aCol = (<usize>csA) << 2;
  const panelBytes = (<usize>K) << 5;
  const kcMax = sliceDepth(K);
  for (let jc = 0; jc < N; jc += NC) {
    const nc = minI32(NC, N - jc);
    for (let pc = 0; pc < K; pc += kcMax) {
      const kc = minI32(kcMax, K - pc);
      const last = pc + kc >= K;
      const addC = pc > 0 || accumulate != 0;
      const slice = P + <usize>(jc >> 3) * panelBytes + ((<usize>pc) << 5);
      for (let ic = 0; ic < M; ic += MC) {
        const mc = minI32(MC, M - ic);
        packA(mc, kc, A + <usize>ic * aRow + <usize>pc * aCol, rsA, csA, packedA);
        macroKernel(
          mc,
          nc,
          kc,
          packedA,
          slice,
          panelBytes,
          0,
          0,
          0,
          0,
          C + ((<usize>ic * <usize>ldc + <usize>jc) << 2),
          ldc,
          bias != 0 ? bias + ((<usize>jc) << 2) : 0,
          addC,
          last,
          lo,
          hi,
          tile,
        );
      }
    }
  }
}

/**
 * Epilogue of 8 columns of one row, as the micro-kernel's (macroKernel) store does it, so a row
 * computed here is bit-identical to the same row computed in a batch: (+C when addC), and on the
 * last K slice (+bias) and the clamp; only the first `valid` columns are stored.
 */
function finish8(
  c: usize,
  x0: v128,
  x1: v128,
  valid: i32,
  addC: bool,
  last: bool,
  bias: usize,
  lo: f32,
  hi: f32,
  tile: usize,
): void {
  if (valid >= 8) {
    let bias0 = f32x4.splat(0);
    let bias1 = bias0;
    if (last && bias != 0) {
      bias0 = v128.load(bias);
      bias1 = v128.load(bias, 16);
    }
    storeRow8(c, x0, x1, addC, last, bias0, bias1, f32x4.splat(lo), f32x4.splat(hi));
    return;
  }
  v128.store(tile, x0);
  v128.store(tile, x1, 16);
  for (let j = 0; j < valid; j++) {
    const o = (<usize>j) << 2;
    let v = load<f32>(tile + o);
    if (addC) v += load<f32>(c + o);
    if (last) {
      if (bias != 0) v += load<f32>(bias + o);
      v = v < lo ? lo : v;
      v = hi < v ? hi : v;
    }
    store<f32>(c + o, v);
  }
}

/**
 * M <= 2 rows against a pre-packed B: per row, up to three 8-column panels at a time (24 columns,
 * 6 accumulators), each panel read front to back — sequential streams the prefetcher follows.
 * Three, not four: with 8 accumulators plus their 8 loads V8 runs out of xmm registers and keeps
 * an accumulator on the stack (measured 15 vs ~28 GFLOP/s at 1x256x784). K goes in the same
 * slices as the batched path (sliceDepth), partial sums in C between slices, so batch 1 gives the
 * same bits as the same sample in a batch.
 */
function gemmRowsPacked(
  M: i32,
  N: i32,
  K: i32,
  A: usize,
  rsA: i32,
  csA: i32,
  P: usize,
  C: usize,
  ldc: i32,
  bias: usize,
  lo: f32,
  hi: f32,
  accumulate: i32,
  scratch: usize,
): void {
  const tile = alignScratch(scratch);
  const aStep = (<usize>csA) << 2;
  const panelBytes = (<usize>K) << 5;
  const panels = (N + 7) >> 3;
  const kcMax = sliceDepth(K);
  for (let i = 0; i < M; i++) {
    const aRow = A + ((<usize>i * <usize>rsA) << 2);
    const cRow = C + ((<usize>i * <usize>ldc) << 2);
    for (let p = 0; p < panels; p += 3) {
      const np = minI32(3, panels - p);
      const j = p << 3;
      const c = cRow + ((<usize>j) << 2);
      const bj: usize = bias != 0 ? bias + ((<usize>j) << 2) : 0;
      for (let pc = 0; pc < K; pc += kcMax) {
        const kc = minI32(kcMax, K - pc);
        const addC = pc > 0 || accumulate != 0;
        const last = pc + kc >= K;
        let x0 = f32x4.splat(0);
        let x1 = x0;
        let x2 = x0;
        let x3 = x0;
        let x4 = x0;
        let x5 = x0;
        let a = aRow + <usize>pc * aStep;
        const aEnd = a + <usize>kc * aStep;
        let b0 = P + <usize>p * panelBytes + ((<usize>pc) << 5);
        if (np == 3) {
          let b1 = b0 + panelBytes;
          let b2 = b1 + panelBytes;
          while (a < aEnd) {
            const av = v128.load32_splat(a);
            x0 = Isa.madd(av, v128.load(b0), x0);
            x1 = Isa.madd(av, v128.load(b0, 16), x1);
            x2 = Isa.madd(av, v128.load(b1), x2);
            x3 = Isa.madd(av, v128.load(b1, 16), x3);
            x4 = Isa.madd(av, v128.load(b2), x4);
            x5 = Isa.madd(av, v128.load(b2, 16), x5);
            a += aStep;
            b0 += 32;
            b1 += 32;
            b2 += 32;
          }
        } else if (np == 2) {
          let b1 = b0 + panelBytes;
          while (a < aEnd) {
            const av = v128.load32_splat(a);
            x0 = Isa.madd(av, v128.load(b0), x0);
            x1 = Isa.madd(av, v128.load(b0, 16), x1);
            x2 = Isa.madd(av, v128.load(b1), x2);
            x3 = Isa.madd(av, v128.load(b1, 16), x3);
            a += aStep;
            b0 += 32;
            b1 += 32;
          }
        } else {
          while (a < aEnd) {
            const av = v128.load32_splat(a);
            x0 = Isa.madd(av, v128.load(b0), x0);
            x1 = Isa.madd(av, v128.load(b0, 16), x1);
            a += aStep;
            b0 += 32;
          }
        }
        finish8(c, x0, x1, N - j, addC, last, bj, lo, hi, tile);
        if (np > 1)
          finish8(c + 32, x2, x3, N - j - 8, addC, last, bj != 0 ? bj + 32 : 0, lo, hi, tile);
        if (np > 2)
          finish8(c + 64, x4, x5, N - j - 16, addC, last, bj != 0 ? bj + 64 : 0, lo, hi, tile);
      }
    }
  }
}

/** Scalar twin of gemm_f32 (test oracle): the plain triple loop, same epilogue. scratch unused. */
export function gemm_f32_scalar(
  M: i32,
  N: i32,
  K: i32,
  A: usize,
  rsA: i32,
  csA: i32,
  B: usize,
  rsB: i32,
  csB: i32,
  C: usize,
  ldc: i32,
  bias: usize,
  lo: f32,
  hi: f32,
  accumulate: i32,
  scratch: usize,
): void {
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let sum: f32 = 0;
      for (let k = 0; k < K; k++) {
        const a = load<f32>(A + ((<usize>i * rsA + <usize>k * csA) << 2));
        const b = load<f32>(B + ((<usize>k * rsB + <usize>j * csB) << 2));
        sum += a * b;
      }
      const c = C + ((<usize>i * ldc + <usize>j) << 2);
      if (accumulate != 0) sum += load<f32>(c);
      if (bias != 0) sum += load<f32>(bias + ((<usize>j) << 2));
      sum = sum < lo ? lo : sum;
      sum = hi < sum ? hi : sum;
      store<f32>(c, sum);
    }
  }
}

/**
 * Measures the machine's WASM SIMD mul+add throughput: 12 independent f32x4 chains
 * acc = acc*m + a (a mul then an add, like the GEMM inner loop; 12 chains cover the 3+3 cycle
 * latency on 2 mul + 2 add pipes). 96 flops per iteration. Returns a lane sum so nothing is dead.
 *
 * ma: 8 floats, m in lanes 0-3 and a in lanes 4-7. The two vectors are loaded from memory, not
 * splatted from f32 parameters: Node 20's V8 (11.3) placed those two splats inside the loop and
 * reloaded m from the stack every iteration, which held this loop to ~41 GFLOP/s on a Zen 3 core
 * that runs it at ~51.7 with the loads (and Chromium 156's V8 at ~49-50 either way).
 */
export function simd_peak_f32(iters: i32, ma: usize): f32 {
  const vm = v128.load(ma);
  const va = v128.load(ma, 16);
  let x0 = f32x4.splat(1);
  let x1 = f32x4.splat(2);
  let x2 = f32x4.splat(3);
  let x3 = f32x4.splat(4);
  let x4 = f32x4.splat(5);
  let x5 = f32x4.splat(6);
  let x6 = f32x4.splat(7);
  let x7 = f32x4.splat(8);
  let x8 = f32x4.splat(9);
  let x9 = f32x4.splat(10);
  let x10 = f32x4.splat(11);
  let x11 = f32x4.splat(12);
  for (let i = 0; i < iters; i++) {
    x0 = f32x4.add(f32x4.mul(x0, vm), va);
    x1 = f32x4.add(f32x4.mul(x1, vm), va);
    x2 = f32x4.add(f32x4.mul(x2, vm), va);
    x3 = f32x4.add(f32x4.mul(x3, vm), va);
    x4 = f32x4.add(f32x4.mul(x4, vm), va);
    x5 = f32x4.add(f32x4.mul(x5, vm), va);
    x6 = f32x4.add(f32x4.mul(x6, vm), va);
    x7 = f32x4.add(f32x4.mul(x7, vm), va);
    x8 = f32x4.add(f32x4.mul(x8, vm), va);
    x9 = f32x4.add(f32x4.mul(x9, vm), va);
    x10 = f32x4.add(f32x4.mul(x10, vm), va);
    x11 = f32x4.add(f32x4.mul(x11, vm), va);
  }
  const s = f32x4.add(
    f32x4.add(f32x4.add(f32x4.add(x0, x1), f32x4.add(x2, x3)), f32x4.add(x4, x5)),
    f32x4.add(f32x4.add(f32x4.add(x6, x7), f32x4.add(x8, x9)), f32x4.add(x10, x11)),
  );
  return (
    f32x4.extract_lane(s, 0) +
    f32x4.extract_lane(s, 1) +
    f32x4.extract_lane(s, 2) +
    f32x4.extract_lane(s, 3)
  );
}

/**
 * simd_peak_f32 with each acc*m + a as one Isa.madd: the same mul+add in the baseline build, one
 * relaxed_madd (FMA) per chain step in the relaxed build: the peak its GEMM should be compared to.
 * 12 chains also cover the 4-cycle FMA latency on 2 FMA pipes. 96 flops per iteration. ma as in
 * simd_peak_f32.
 */
export function simd_peak_madd_f32(iters: i32, ma: usize): f32 {
  const vm = v128.load(ma);
  const va = v128.load(ma, 16);
  let x0 = f32x4.splat(1);
  let x1 = f32x4.splat(2);
  let x2 = f32x4.splat(3);
  let x3 = f32x4.splat(4);
  let x4 = f32x4.splat(5);
  let x5 = f32x4.splat(6);
  let x6 = f32x4.splat(7);
  let x7 = f32x4.splat(8);
  let x8 = f32x4.splat(9);
  let x9 = f32x4.splat(10);
  let x10 = f32x4.splat(11);
  let x11 = f32x4.splat(12);
  for (let i = 0; i < iters; i++) {
    x0 = Isa.madd(x0, vm, va);
    x1 = Isa.madd(x1, vm, va);
    x2 = Isa.madd(x2, vm, va);
    x3 = Isa.madd(x3, vm, va);
    x4 = Isa.madd(x4, vm, va);
    x5 = Isa.madd(x5, vm, va);
    x6 = Isa.madd(x6, vm, va);
    x7 = Isa.madd(x7, vm, va);
    x8 = Isa.madd(x8, vm, va);
    x9 = Isa.madd(x9, vm, va);
    x10 = Isa.madd(x10, vm, va);
    x11 = Isa.madd(x11, vm, va);
  }
  const s = f32x4.add(
    f32x4.add(f32x4.add(f32x4.add(x0, x1), f32x4.add(x2, x3)), f32x4.add(x4, x5)),
    f32x4.add(f32x4.add(f32x4.add(x6, x7), f32x4.add(x8, x9)), f32x4.add(x10, x11)),
  );
  return (
    f32x4.extract_lane(s, 0) +
    f32x4.extract_lane(s, 1) +
    f32x4.extract_lane(s, 2) +
    f32x4.extract_lane(s, 3)
  );
}
