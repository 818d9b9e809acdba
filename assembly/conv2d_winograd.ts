// Winograd F(2x2, 3x3) for 3x3 stride-1 Conv2D (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", 2015). Each 2x2 output tile is Y = A^T [U (.) V] A with U = G g G^T (weights)
// and V = B^T d B (the 4x4 input patch): 16 products per tile and channel pair instead of 36, so
// the GEMM work of conv2d drops 2.25x. The 16 element-wise products over channels become 16 GEMMs
// ([tiles,C].[C,F]) that run on gemm_f32. The transforms only use 0, +-1 and +-1/2, so the f32
// error stays at the level of the direct sum.
//
// The filter gradient is the exact adjoint of that formula; the data gradient of a stride-1 conv
// is itself a forward conv (of dy, with the kernel flipped and its C/F axes swapped), so it runs
// through the same forward code:
//   bwd filter  dU[xi] = sum over tiles of V[xi]^T . Z[xi], Z = A dY A^T;  dw = G^T dU G
//   bwd data    dx = conv(dy, w'), w'[kh,kw,f,c] = w[2-kh,2-kw,c,f], padding 2-padT / 2-padL
//               (measured ~1 ms faster at 14x14x32->64, batch 64, than scattering B dV B^T into dx)
//
// Layouts (xi = 4*i + j indexes the 4x4 transform domain; t the tile within a chunk):
//   U, dU  [16][C][F]      V  [16][Tc][C]      M, Z  [16][Tc][F]
// Tiles are numbered t = (n*TH + th)*TW + tw over the whole batch and processed Tc at a time, so
// scratch stays bounded. Vectorised over channels: C and F must be multiples of 4.
import {
  gemm_f32,
  gemm_f32_prepacked,
  gemm_pack_b_f32,
  gemm_packed_b_floats,
  gemm_scratch_bytes,
} from "./gemm";

/** Floats of V + M for one chunk of tiles (512 KB): stays in L2 between transform and GEMM. */
const CHUNK_FLOATS: i32 = 1 << 17;

/** Whether conv2d takes the Winograd path: 3x3, stride 1, channel counts worth a GEMM. */
export function winogradApplies(C: i32, F: i32, KH: i32, KW: i32, SH: i32, SW: i32): bool {
  // With C or F below 16 the per-xi GEMMs are too thin to beat one im2col GEMM (measured).
  return (
    KH == 3 && KW == 3 && SH == 1 && SW == 1 && C >= 16 && F >= 16 && (C & 3) == 0 && (F & 3) == 0
  );
}

function tilesPerChunk(tiles: i32, C: i32, F: i32): i32 {
  let tc = (CHUNK_FLOATS / (16 * (C + F))) & ~3;
  if (tc < 4) tc = 4;
  return tiles < tc ? tiles : tc;
}

function alignUp64(p: usize): usize {
  return (p + 63) & ~(<usize>63);
}

/** Scratch bytes of every Winograd pass: flipped weights, U (or dU), one chunk of V and M (or Z), GEMM packing. */
export function winograd_scratch_bytes(
  N: i32,
  H: i32,
  W: i32,
  OH: i32,
  OW: i32,
  C: i32,
  F: i32,
): i32 {
  // bwd data tiles the input (H x W), the other passes the output.
  const tiles = max(N * ((OH + 1) >> 1) * ((OW + 1) >> 1), N * ((H + 1) >> 1) * ((W + 1) >> 1));
  const tc = max(tilesPerChunk(tiles, C, F), 1);
  const g = max(
    gemm_scratch_bytes(tc, F, C),
    max(gemm_scratch_bytes(tc, C, F), gemm_scratch_bytes(C, F, tc)),
  );
  return 5 * 64 + 9 * C * F * 4 + 16 * C * F * 4 + 16 * tc * C * 4 + 16 * tc * F * 4 + g;
}

/** The data gradient as a forward conv needs padding 2-padT, 2-padL >= 0. */
export function winogradBackwardDataApplies(
  C: i32,
  F: i32,
  KH: i32,
  KW: i32,
  SH: i32,
  SW: i32,
  padT: i32,
  padL: i32,
): bool {
  return winogradApplies(C, F, KH, KW, SH, SW) && padT <= 2 && padL <= 2;
}

// ---- weight transforms ---------------------------------------------------------------------------

/** U[16][C][F] = G g G^T for every (c, f), g = w[0:3, 0:3, c, f]; four filters per vector. */
function weightTransform(C: i32, F: i32, w: usize, U: usize): void {
  const half = f32x4.splat(0.5);
  const tapStride = (<usize>(C * F)) << 2; // bytes between (kh,kw) taps of one (c,f)
  const xiStride = (<usize>(C * F)) << 2;
  for (let c = 0; c < C; c++) {
    for (let f = 0; f < F; f += 4) {
      const off = (<usize>(c * F + f)) << 2;
      const src = w + off;
      // Columns of G g: for each kw, rows r0..r3 over the three kh taps.
      const g00 = v128.load(src);
      const g01 = v128.load(src + tapStride);
      const g02 = v128.load(src + 2 * tapStride);
      const g10 = v128.load(src + 3 * tapStride);
      const g11 = v128.load(src + 4 * tapStride);
      const g12 = v128.load(src + 5 * tapStride);
      const g20 = v128.load(src + 6 * tapStride);
      const g21 = v128.load(src + 7 * tapStride);
      const g22 = v128.load(src + 8 * tapStride);
      // (G g): rows 0..3, columns kw = 0..2
      const s0 = f32x4.add(g00, g20);
      const s1 = f32x4.add(g01, g21);
      const s2 = f32x4.add(g02, g22);
      const r10 = f32x4.mul(half, f32x4.add(s0, g10));
      const r11 = f32x4.mul(half, f32x4.add(s1, g11));
      const r12 = f32x4.mul(half, f32x4.add(s2, g12));
      const r20 = f32x4.mul(half, f32x4.sub(s0, g10));
      const r21 = f32x4.mul(half, f32x4.sub(s1, g11));
      const r22 = f32x4.mul(half, f32x4.sub(s2, g12));
      const dst = U + off;
      weightRow(g00, g01, g02, dst, xiStride, half);
      weightRow(r10, r11, r12, dst + 4 * xiStride, xiStride, half);
      weightRow(r20, r21, r22, dst + 8 * xiStride, xiStride, half);
      weightRow(g20, g21, g22, dst + 12 * xiStride, xiStride, half);
    }
  }
}

/** One row of (G g) G^T: [a, (a+b+c)/2, (a-b+c)/2, c] at dst + j*xiStride. */
function weightRow(a: v128, b: v128, c: v128, dst: usize, xiStride: usize, half: v128): void {
  const ac = f32x4.add(a, c);
  v128.store(dst, a);
  v128.store(dst + xiStride, f32x4.mul(half, f32x4.add(ac, b)));
  v128.store(dst + 2 * xiStride, f32x4.mul(half, f32x4.sub(ac, b)));
  v128.store(dst + 3 * xiStride, c);
}

/** dw[3,3,C,F] = G^T dU G for every (c, f): the adjoint of weightTransform. */
function weightAdjoint(C: i32, F: i32, dU: usize, dw: usize): void {
  const half = f32x4.splat(0.5);
  const xiStride = (<usize>(C * F)) << 2;
  const tapStride = (<usize>(C * F)) << 2;
  for (let c = 0; c < C; c++) {
    for (let f = 0; f < F; f += 4) {
      const off = (<usize>(c * F + f)) << 2;
      const src = dU + off;
      // q_i[kw] = sum_j dU[i][j] G[j][kw] for each of the 4 rows i.
      let q00: v128, q01: v128, q02: v128, q10: v128, q11: v128, q12: v128;
      let q20: v128, q21: v128, q22: v128, q30: v128, q31: v128, q32: v128;
      {
        const p = src;
        const u1 = v128.load(p + xiStride);
        const u2 = v128.load(p + 2 * xiStride);
        const m = f32x4.mul(half, f32x4.add(u1, u2));
        q00 = f32x4.add(v128.load(p), m);
        q01 = f32x4.mul(half, f32x4.sub(u1, u2));
        q02 = f32x4.add(m, v128.load(p + 3 * xiStride));
      }
      {
        const p = src + 4 * xiStride;
        const u1 = v128.load(p + xiStride);
        const u2 = v128.load(p + 2 * xiStride);
        const m = f32x4.mul(half, f32x4.add(u1, u2));
        q10 = f32x4.add(v128.load(p), m);
        q11 = f32x4.mul(half, f32x4.sub(u1, u2));
        q12 = f32x4.add(m, v128.load(p + 3 * xiStride));
      }
      {
        const p = src + 8 * xiStride;
        const u1 = v128.load(p + xiStride);
        const u2 = v128.load(p + 2 * xiStride);
        const m = f32x4.mul(half, f32x4.add(u1, u2));
        q20 = f32x4.add(v128.load(p), m);
        q21 = f32x4.mul(half, f32x4.sub(u1, u2));
        q22 = f32x4.add(m, v128.load(p + 3 * xiStride));
      }
      {
        const p = src + 12 * xiStride;
        const u1 = v128.load(p + xiStride);
        const u2 = v128.load(p + 2 * xiStride);
        const m = f32x4.mul(half, f32x4.add(u1, u2));
        q30 = f32x4.add(v128.load(p), m);
        q31 = f32x4.mul(half, f32x4.sub(u1, u2));
        q32 = f32x4.add(m, v128.load(p + 3 * xiStride));
      }
      // dw[kh][kw] = sum_i G[i][kh] q_i[kw]
      const dst = dw + off;
      const m0 = f32x4.mul(half, f32x4.add(q10, q20));
      const m1 = f32x4.mul(half, f32x4.add(q11, q21));
      const m2 = f32x4.mul(half, f32x4.add(q12, q22));
      v128.store(dst, f32x4.add(q00, m0));
      v128.store(dst + tapStride, f32x4.add(q01, m1));
      v128.store(dst + 2 * tapStride, f32x4.add(q02, m2));
      v128.store(dst + 3 * tapStride, f32x4.mul(half, f32x4.sub(q10, q20)));
      v128.store(dst + 4 * tapStride, f32x4.mul(half, f32x4.sub(q11, q21)));
      v128.store(dst + 5 * tapStride, f32x4.mul(half, f32x4.sub(q12, q22)));
      v128.store(dst + 6 * tapStride, f32x4.add(m0, q30));
      v128.store(dst + 7 * tapStride, f32x4.add(m1, q31));
      v128.store(dst + 8 * tapStride, f32x4.add(m2, q32));
    }
  }
}

// ---- input transforms ----------------------------------------------------------------------------

/** One row of B^T-transformed columns, transformed along the row: [t0-t2, t1+t2, t2-t1, t1-t3]. */
function inputRow(t0: v128, t1: v128, t2: v128, t3: v128, dst: usize, xiStride: usize): void {
  v128.store(dst, f32x4.sub(t0, t2));
  v128.store(dst + xiStride, f32x4.add(t1, t2));
  v128.store(dst + 2 * xiStride, f32x4.sub(t2, t1));
  v128.store(dst + 3 * xiStride, f32x4.sub(t1, t3));
}

/**
 * V[16][t][C] = B^T d B for tiles t0..t0+T; d the 4x4 patch at (2th - padT, 2tw - padL).
 * temp: 64 + 4*C bytes of scratch. Border tiles read through a table of 16 pixel pointers in which
 * positions in the padding point at a row of C zeros, so their channel loop has no branches.
 */
function inputTransform(
  t0: i32,
  T: i32,
  H: i32,
  W: i32,
  C: i32,
  padT: i32,
  padL: i32,
  TH: i32,
  TW: i32,
  x: usize,
  V: usize,
  xiStride: usize,
  temp: usize,
): void {
  const ptrs = temp; // [16] u32 pixel pointers of the current border tile
  const zeros = temp + 64; // [C] f32 zeros
  memory.fill(zeros, 0, (<usize>C) << 2);
  const perImage = TH * TW;
  let n = t0 / perImage;
  let th = (t0 - n * perImage) / TW;
  let tw = t0 - n * perImage - th * TW;
  const imgBytes = (<usize>(H * W * C)) << 2;
  const rowBytes = (<usize>(W * C)) << 2;
  const pixBytes = (<usize>C) << 2;
  for (let t = 0; t < T; t++) {
    const ih0 = 2 * th - padT;
    const iw0 = 2 * tw - padL;
    const img = x + <usize>n * imgBytes;
    const interior = ih0 >= 0 && ih0 + 4 <= H && iw0 >= 0 && iw0 + 4 <= W;
    const dstT = V + ((<usize>(t * C)) << 2);
    if (!interior) {
      for (let i = 0; i < 4; i++) {
        const ih = ih0 + i;
        for (let j = 0; j < 4; j++) {
          const iw = iw0 + j;
          const inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
          store<usize>(
            ptrs + ((<usize>(4 * i + j)) << 2),
            inside ? img + <usize>ih * rowBytes + <usize>iw * pixBytes : zeros,
          );
        }
      }
    }
    for (let c = 0; c < C; c += 4) {
      let d00: v128, d01: v128, d02: v128, d03: v128, d10: v128, d11: v128, d12: v128, d13: v128;
      let d20: v128, d21: v128, d22: v128, d23: v128, d30: v128, d31: v128, d32: v128, d33: v128;
      const cb = (<usize>c) << 2;
      if (interior) {
        const p = img + <usize>ih0 * rowBytes + <usize>iw0 * pixBytes + cb;
        d00 = v128.load(p);
        d01 = v128.load(p + pixBytes);
        d02 = v128.load(p + 2 * pixBytes);
        d03 = v128.load(p + 3 * pixBytes);
        const p1 = p + rowBytes;
        d10 = v128.load(p1);
        d11 = v128.load(p1 + pixBytes);
        d12 = v128.load(p1 + 2 * pixBytes);
        d13 = v128.load(p1 + 3 * pixBytes);
        const p2 = p1 + rowBytes;
        d20 = v128.load(p2);
        d21 = v128.load(p2 + pixBytes);
        d22 = v128.load(p2 + 2 * pixBytes);
        d23 = v128.load(p2 + 3 * pixBytes);
        const p3 = p2 + rowBytes;
        d30 = v128.load(p3);
        d31 = v128.load(p3 + pixBytes);
        d32 = v128.load(p3 + 2 * pixBytes);
        d33 = v128.load(p3 + 3 * pixBytes);
      } else {
        d00 = v128.load(load<usize>(ptrs) + cb);
        d01 = v128.load(load<usize>(ptrs, 4) + cb);
        d02 = v128.load(load<usize>(ptrs, 8) + cb);
        d03 = v128.load(load<usize>(ptrs, 12) + cb);
        d10 = v128.load(load<usize>(ptrs, 16) + cb);
        d11 = v128.load(load<usize>(ptrs, 20) + cb);
        d12 = v128.load(load<usize>(ptrs, 24) + cb);
        d13 = v128.load(load<usize>(ptrs, 28) + cb);
        d20 = v128.load(load<usize>(ptrs, 32) + cb);
        d21 = v128.load(load<usize>(ptrs, 36) + cb);
        d22 = v128.load(load<usize>(ptrs, 40) + cb);
        d23 = v128.load(load<usize>(ptrs, 44) + cb);
        d30 = v128.load(load<usize>(ptrs, 48) + cb);
        d31 = v128.load(load<usize>(ptrs, 52) + cb);
        d32 = v128.load(load<usize>(ptrs, 56) + cb);
        d33 = v128.load(load<usize>(ptrs, 60) + cb);
      }
      // B^T d: combine rows (column by column), then d B: combine columns (row by row).
      const dst = dstT + cb;
      inputRow(
        f32x4.sub(d00, d20),
        f32x4.sub(d01, d21),
        f32x4.sub(d02, d22),
        f32x4.sub(d03, d23),
        dst,
        xiStride,
      );
      inputRow(
        f32x4.add(d10, d20),
        f32x4.add(d11, d21),
        f32x4.add(d12, d22),
        f32x4.add(d13, d23),
        dst + 4 * xiStride,
        xiStride,
      );
      inputRow(
        f32x4.sub(d20, d10),
        f32x4.sub(d21, d11),
        f32x4.sub(d22, d12),
        f32x4.sub(d23, d13),
        dst + 8 * xiStride,
        xiStride,
      );
      inputRow(
        f32x4.sub(d10, d30),
        f32x4.sub(d11, d31),
        f32x4.sub(d12, d32),
        f32x4.sub(d13, d33),
        dst + 12 * xiStride,
        xiStride,
      );
    }
    if (++tw == TW) {
      tw = 0;
      if (++th == TH) {
        th = 0;
        n++;
      }
    }
  }
}

// ---- output-side transforms ----------------------------------------------------------------------

/** Sum of row i's four M entries the A^T way: [m0+m1+m2, m1-m2-m3]; stored to s (2 slots). */
function outputRow(p: usize, xiStride: usize, s: usize): void {
  const m0 = v128.load(p);
  const m1 = v128.load(p + xiStride);
  const m2 = v128.load(p + 2 * xiStride);
  const m3 = v128.load(p + 3 * xiStride);
  v128.store(s, f32x4.add(f32x4.add(m0, m1), m2));
  v128.store(s, f32x4.sub(f32x4.sub(m1, m2), m3), 16);
}

/** y = clamp(A^T M A + bias, lo, hi) for tiles t0..t0+T; outputs past OH/OW are dropped. */
function outputTransform(
  t0: i32,
  T: i32,
  OH: i32,
  OW: i32,
  F: i32,
  TH: i32,
  TW: i32,
  M: usize,
  xiStride: usize,
  y: usize,
  bias: usize,
  lo: f32,
  hi: f32,
  rows: usize, // 128 bytes of scratch: the 4 rows of A^T-combined columns
): void {
  const perImage = TH * TW;
  let n = t0 / perImage;
  let th = (t0 - n * perImage) / TW;
  let tw = t0 - n * perImage - th * TW;
  const vlo = f32x4.splat(lo);
  const vhi = f32x4.splat(hi);
  const rowBytes = (<usize>(OW * F)) << 2;
  const imgBytes = <usize>OH * rowBytes;
  for (let t = 0; t < T; t++) {
    const oh = 2 * th;
    const ow = 2 * tw;
    const out = y + <usize>n * imgBytes + <usize>oh * rowBytes + ((<usize>(ow * F)) << 2);
    const hasRow1 = oh + 1 < OH;
    const hasCol1 = ow + 1 < OW;
    const srcT = M + ((<usize>(t * F)) << 2);
    for (let f = 0; f < F; f += 4) {
      const s = srcT + ((<usize>f) << 2);
      for (let i = 0; i < 4; i++)
        outputRow(s + <usize>(4 * i) * xiStride, xiStride, rows + ((<usize>i) << 5));
      // A^T along columns: row 0 = s0 + s1 + s2, row 1 = s1 - s2 - s3 (per output column a).
      const b = bias != 0 ? v128.load(bias + ((<usize>f) << 2)) : f32x4.splat(0);
      const s00 = v128.load(rows);
      const s01 = v128.load(rows, 16);
      const s10 = v128.load(rows, 32);
      const s11 = v128.load(rows, 48);
      const s20 = v128.load(rows, 64);
      const s21 = v128.load(rows, 80);
      const s30 = v128.load(rows, 96);
      const s31 = v128.load(rows, 112);
      const o = out + ((<usize>f) << 2);
      v128.store(o, clampBias(f32x4.add(f32x4.add(s00, s10), s20), b, vlo, vhi));
      if (hasCol1)
        v128.store(
          o + ((<usize>F) << 2),
          clampBias(f32x4.add(f32x4.add(s01, s11), s21), b, vlo, vhi),
        );
      if (hasRow1) {
        v128.store(o + rowBytes, clampBias(f32x4.sub(f32x4.sub(s10, s20), s30), b, vlo, vhi));
        if (hasCol1) {
          v128.store(
            o + rowBytes + ((<usize>F) << 2),
            clampBias(f32x4.sub(f32x4.sub(s11, s21), s31), b, vlo, vhi),
          );
        }
      }
    }
    if (++tw == TW) {
      tw = 0;
      if (++th == TH) {
        th = 0;
        n++;
      }
    }
  }
}

function clampBias(v: v128, b: v128, lo: v128, hi: v128): v128 {
  return f32x4.pmin(f32x4.pmax(f32x4.add(v, b), lo), hi);
}

/** Z[16][t][F] = A dY A^T for tiles t0..t0+T (dy outside OH/OW counts as zero). */
function dyTransform(
  t0: i32,
  T: i32,
  OH: i32,
  OW: i32,
  F: i32,
  TH: i32,
  TW: i32,
  dy: usize,
  Z: usize,
  xiStride: usize,
): void {
  const perImage = TH * TW;
  let n = t0 / perImage;
  let th = (t0 - n * perImage) / TW;
  let tw = t0 - n * perImage - th * TW;
  const rowBytes = (<usize>(OW * F)) << 2;
  const imgBytes = <usize>OH * rowBytes;
  const zero = f32x4.splat(0);
  for (let t = 0; t < T; t++) {
    const oh = 2 * th;
    const ow = 2 * tw;
    const src = dy + <usize>n * imgBytes + <usize>oh * rowBytes + ((<usize>(ow * F)) << 2);
    const hasRow1 = oh + 1 < OH;
    const hasCol1 = ow + 1 < OW;
    const dstT = Z + ((<usize>(t * F)) << 2);
    for (let f = 0; f < F; f += 4) {
      const p = src + ((<usize>f) << 2);
      const y00 = v128.load(p);
      const y01 = hasCol1 ? v128.load(p + ((<usize>F) << 2)) : zero;
      const y10 = hasRow1 ? v128.load(p + rowBytes) : zero;
      const y11 = hasRow1 && hasCol1 ? v128.load(p + rowBytes + ((<usize>F) << 2)) : zero;
      // A Y: rows [y0, y0+y1, y0-y1, -y1]; then (A Y) A^T along columns the same way.
      const dst = dstT + ((<usize>f) << 2);
      zRow(y00, y01, dst, xiStride);
      zRow(f32x4.add(y00, y10), f32x4.add(y01, y11), dst + 4 * xiStride, xiStride);
      zRow(f32x4.sub(y00, y10), f32x4.sub(y01, y11), dst + 8 * xiStride, xiStride);
      zRow(f32x4.neg(y10), f32x4.neg(y11), dst + 12 * xiStride, xiStride);
    }
    if (++tw == TW) {
      tw = 0;
      if (++th == TH) {
        th = 0;
        n++;
      }
    }
  }
}

function zRow(a: v128, b: v128, dst: usize, xiStride: usize): void {
  v128.store(dst, a);
  v128.store(dst + xiStride, f32x4.add(a, b));
  v128.store(dst + 2 * xiStride, f32x4.sub(a, b));
  v128.store(dst + 3 * xiStride, f32x4.neg(b));
}

// ---- the three passes ----------------------------------------------------------------------------

export function winogradForward(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  F: i32,
  x: usize,
  w: usize,
  bias: usize,
  y: usize,
  lo: f32,
  hi: f32,
  scratch: usize,
): void {
  if (N * ((OH + 1) >> 1) * ((OW + 1) >> 1) <= 0 || F <= 0) return;
  // scratch: U [16][C][F] | the tiles' buffers (forwardTiles)
  const rU = alignUp64(scratch);
  weightTransform(C, F, w, rU);
  forwardTiles(
    N,
    H,
    W,
    C,
    padT,
    padL,
    OH,
    OW,
    F,
    x,
    rU,
    false,
    bias,
    y,
    lo,
    hi,
    rU + ((<usize>(16 * C * F)) << 2),
  );
}

/** Floats of the weights winogradPackWeights makes: U[xi], each packed for gemm_f32_prepacked. */
export function winograd_packed_weights_floats(C: i32, F: i32): i32 {
  return 16 * gemm_packed_b_floats(C, F);
}

/**
 * For inference, where the weights do not change between calls: dst = the 16 transform-domain
 * weight matrices U[xi] = (G g G^T)[xi] [C][F], each pre-packed for gemm_f32_prepacked, so
 * winogradForwardPacked neither transforms nor packs the weights on every call. scratch: U, at
 * most winograd_scratch_bytes.
 */
export function winogradPackWeights(C: i32, F: i32, w: usize, dst: usize, scratch: usize): void {
  const rU = alignUp64(scratch);
  weightTransform(C, F, w, rU);
  const per = (<usize>gemm_packed_b_floats(C, F)) << 2;
  const uXi = (<usize>(C * F)) << 2;
  for (let xi = 0; xi < 16; xi++)
    gemm_pack_b_f32(C, F, rU + <usize>xi * uXi, F, 1, dst + <usize>xi * per);
}

/**
 * winogradForward with the weights from winogradPackWeights: the same bits (the same products and
 * sums; gemm_f32_prepacked is gemm_f32 without its packing pass).
 */
export function winogradForwardPacked(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  F: i32,
  x: usize,
  packed: usize,
  bias: usize,
  y: usize,
  lo: f32,
  hi: f32,
  scratch: usize,
): void {
  if (N * ((OH + 1) >> 1) * ((OW + 1) >> 1) <= 0 || F <= 0) return;
  forwardTiles(N, H, W, C, padT, padL, OH, OW, F, x, packed, true, bias, y, lo, hi, scratch);
}

/**
 * The tiles of a Winograd forward pass, Tc at a time: input transform, the 16 GEMMs V[xi].U[xi],
 * output transform. U is [16][C][F] row-major, or packed (winogradPackWeights). work: V [16][tc][C]
 * | M [16][tc][F] | GEMM packing.
 */
function forwardTiles(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  F: i32,
  x: usize,
  U: usize,
  packed: bool,
  bias: usize,
  y: usize,
  lo: f32,
  hi: f32,
  work: usize,
): void {
  const TH = (OH + 1) >> 1;
  const TW = (OW + 1) >> 1;
  const tiles = N * TH * TW;
  const tc = tilesPerChunk(tiles, C, F);
  const rV = alignUp64(work);
  const rM = alignUp64(rV + ((<usize>(16 * tc * C)) << 2));
  const rGemm = alignUp64(rM + ((<usize>(16 * tc * F)) << 2));
  const vXi = (<usize>(tc * C)) << 2;
  const mXi = (<usize>(tc * F)) << 2;
  const uXi = packed ? (<usize>gemm_packed_b_floats(C, F)) << 2 : (<usize>(C * F)) << 2;
  for (let t0 = 0; t0 < tiles; t0 += tc) {
    const T = min(tc, tiles - t0);
    inputTransform(t0, T, H, W, C, padT, padL, TH, TW, x, rV, vXi, rGemm);
    for (let xi = 0; xi < 16; xi++) {
      const v = rV + <usize>xi * vXi;
      const u = U + <usize>xi * uXi;
      const m = rM + <usize>xi * mXi;
      if (packed) gemm_f32_prepacked(T, F, C, v, C, 1, u, m, F, 0, -Infinity, Infinity, 0, rGemm);
      else gemm_f32(T, F, C, v, C, 1, u, F, 1, m, F, 0, -Infinity, Infinity, 0, rGemm);
    }
    // The GEMM scratch is free again: its first 128 bytes stage the output rows.
    outputTransform(t0, T, OH, OW, F, TH, TW, rM, mXi, y, bias, lo, hi, rGemm);
  }
}

/** dx[N,H,W,C] = d(loss)/dx as the forward conv of dy with the flipped, transposed kernel. */
export function winogradBackwardData(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  F: i32,
  dy: usize,
  w: usize,
  dx: usize,
  scratch: usize,
): void {
  // wf[kh][kw][f][c] = w[2-kh][2-kw][c][f]
  const wf = alignUp64(scratch);
  for (let tap = 0; tap < 9; tap++) {
    const src = w + ((<usize>((8 - tap) * C * F)) << 2);
    const dst = wf + ((<usize>(tap * F * C)) << 2);
    for (let c = 0; c < C; c++) {
      for (let f = 0; f < F; f++) {
        store<f32>(dst + ((<usize>(f * C + c)) << 2), load<f32>(src + ((<usize>(c * F + f)) << 2)));
      }
    }
  }
  winogradForward(
    N,
    OH,
    OW,
    F,
    2 - padT,
    2 - padL,
    H,
    W,
    C,
    dy,
    wf,
    0,
    dx,
    -Infinity,
    Infinity,
    wf + ((<usize>(9 * C * F)) << 2),
  );
}

export function winogradBackwardFilter(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  F: i32,
  x: usize,
  dy: usize,
  dw: usize,
  scratch: usize,
): void {
  const TH = (OH + 1) >> 1;
  const TW = (OW + 1) >> 1;
  const tiles = N * TH * TW;
  if (tiles <= 0) {
    memory.fill(dw, 0, (<usize>(9 * C * F)) << 2);
    return;
  }
  const tc = tilesPerChunk(tiles, C, F);
  // scratch: U or dU [16][C][F] | V or dV [16][tc][C] | M or Z [16][tc][F] | GEMM packing
  const rU = alignUp64(scratch);
  const rV = alignUp64(rU + ((<usize>(16 * C * F)) << 2));
  const rM = alignUp64(rV + ((<usize>(16 * tc * C)) << 2));
  const rGemm = alignUp64(rM + ((<usize>(16 * tc * F)) << 2));
  const vXi = (<usize>(tc * C)) << 2;
  const zXi = (<usize>(tc * F)) << 2;
  const uXi = (<usize>(C * F)) << 2;
  for (let t0 = 0; t0 < tiles; t0 += tc) {
    const T = min(tc, tiles - t0);
    inputTransform(t0, T, H, W, C, padT, padL, TH, TW, x, rV, vXi, rGemm);
    dyTransform(t0, T, OH, OW, F, TH, TW, dy, rM, zXi);
    // dU[xi] += V[xi]^T . Z[xi]; V[xi]^T element (c, t) at t*C + c: rsA = 1, csA = C.
    for (let xi = 0; xi < 16; xi++) {
      const v = rV + <usize>xi * vXi;
      const z = rM + <usize>xi * zXi;
      const du = rU + <usize>xi * uXi;
      gemm_f32(C, F, T, v, 1, C, z, F, 1, du, F, 0, -Infinity, Infinity, t0 > 0 ? 1 : 0, rGemm);
    }
  }
  weightAdjoint(C, F, rU, dw);
}
