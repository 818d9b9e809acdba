// Implicit-GEMM Conv2D for few input channels (the first layer of an image model: C = 1 or 3).
// With small C an im2col row is a handful of scattered floats, so building the column matrix
// costs as much as the GEMM on it (measured: 1.3 of 2.7 ms for 28x28x1->32 at batch 64). Here the
// 4x8 micro-kernel reads its A operand straight from a zero-padded copy of one image: the 4 rows
// of a tile are 4 output pixels (or 4 filter taps), and one k-step is one load32_splat from each
// of 4 base pointers at a shared offset, so nothing is copied per row.
//
//   forward     y[pixels, F]   = patches(xp)[pixels, KH*KW*C] . w[KH*KW*C, F]   (+bias, clamp)
//   bwd filter  dw[KH*KW*C, F] += patches(xp)^T . dy[pixels, F]                  (per image)
//
// xp is image n zero-padded to Hp = (OH-1)*SH + KH rows and Wp = (OW-1)*SW + KW columns, so every
// window lies inside it and tap (kh, kw, c) of the window at xp-pixel p is at p + (kh*Wp + kw)*C + c.

import { Isa } from "./isa";

/** Floats of the padded image copy beyond which the implicit path is not used (1 MB of scratch). */
const MAX_PADDED_FLOATS: i32 = 1 << 18;

function paddedFloats(C: i32, KH: i32, KW: i32, SH: i32, SW: i32, OH: i32, OW: i32): i32 {
  return ((OH - 1) * SH + KH) * ((OW - 1) * SW + KW) * C;
}

/**
 * Forward: implicit beats im2col + GEMM up to C = 32 (measured at batch 16: 32x32x3 5x5 -> 32
 * 3.2 vs 4.4 ms, 28x28x8 3x3 -> 16 0.9 vs 1.4 ms, 14x14x32 3x3/2 -> 64 0.85 vs 0.92 ms).
 */
export function implicitForwardApplies(
  C: i32,
  KH: i32,
  KW: i32,
  SH: i32,
  SW: i32,
  OH: i32,
  OW: i32,
  F: i32,
): bool {
  return (
    C <= 32 &&
    F > 0 &&
    OH > 0 &&
    OW > 0 &&
    paddedFloats(C, KH, KW, SH, SW, OH, OW) <= MAX_PADDED_FLOATS
  );
}

/** Filter gradient: implicit wins for few channels only (C = 16 and 32 measured slightly slower). */
export function implicitFilterApplies(
  C: i32,
  KH: i32,
  KW: i32,
  SH: i32,
  SW: i32,
  OH: i32,
  OW: i32,
  F: i32,
): bool {
  return implicitForwardApplies(C, KH, KW, SH, SW, OH, OW, F) && C <= 8;
}

function alignUp64(p: usize): usize {
  return (p + 63) & ~(<usize>63);
}

export function implicit_scratch_bytes(
  C: i32,
  KH: i32,
  KW: i32,
  SH: i32,
  SW: i32,
  OH: i32,
  OW: i32,
  F: i32,
): i32 {
  // alignment slop, the 4x8 staging tile and the bias stage, the padded image, then the forward's
  // weight panels or the filter gradient's staged dy columns (F % 8 of them, 8 wide per pixel)
  const panels = KH * KW * C * ((F + 7) & ~7);
  const dyTail = (F & 7) != 0 ? OH * OW * 8 : 0;
  return 3 * 64 + 128 + 64 + paddedFloats(C, KH, KW, SH, SW, OH, OW) * 4 + max(panels, dyTail) * 4;
}

/** xp[Hp][Wp][C] <- image img[H][W][C] placed at (padT, padL), zeros elsewhere (clipped to xp). */
function padImage(
  img: usize,
  H: i32,
  W: i32,
  C: i32,
  padT: i32,
  padL: i32,
  Hp: i32,
  Wp: i32,
  xp: usize,
): void {
  memory.fill(xp, 0, (<usize>(Hp * Wp * C)) << 2);
  const rows = min(H, Hp - padT);
  const cols = min(W, Wp - padL);
  if (cols <= 0) return;
  for (let ih = 0; ih < rows; ih++) {
    memory.copy(
      xp + ((<usize>(((ih + padT) * Wp + padL) * C)) << 2),
      img + ((<usize>(ih * W * C)) << 2),
      (<usize>(cols * C)) << 2,
    );
  }
}

/**
 * packed[ceil(F/8)][kdim][8] <- w[kdim][F]: the B panels of the forward micro-kernel; a last panel
 * narrower than 8 is zero-filled.
 */
function packWeights(kdim: i32, F: i32, w: usize, packed: usize): void {
  for (let j0 = 0; j0 < F; j0 += 8) {
    const nr = min(8, F - j0);
    const panel = packed + ((<usize>(j0 * kdim)) << 2);
    for (let q = 0; q < kdim; q++) {
      const s = w + ((<usize>(q * F + j0)) << 2);
      const d = panel + ((<usize>q) << 5);
      if (nr == 8) {
        v128.store(d, v128.load(s));
        v128.store(d, v128.load(s, 16), 16);
      } else {
        v128.store(d, f32x4.splat(0));
        v128.store(d, f32x4.splat(0), 16);
        for (let j = 0; j < nr; j++)
          store<f32>(d + ((<usize>j) << 2), load<f32>(s + ((<usize>j) << 2)));
      }
    }
  }
}

/** The 4x8 accumulators of a tile, row by row, at t (128 bytes), for a partial store. */
function stageTile(
  t: usize,
  c00: v128,
  c01: v128,
  c10: v128,
  c11: v128,
  c20: v128,
  c21: v128,
  c30: v128,
  c31: v128,
): void {
  v128.store(t, c00);
  v128.store(t, c01, 16);
  v128.store(t, c10, 32);
  v128.store(t, c11, 48);
  v128.store(t, c20, 64);
  v128.store(t, c21, 80);
  v128.store(t, c30, 96);
  v128.store(t, c31, 112);
}

/**
 * The first nr (< 8) columns of one 4x8 tile row: (+bias) then clamp, per element, with the same
 * operations as storeRow8 (pmax(x, lo) is `x < lo ? lo : x`, so NaN stays), from the row staged
 * at `t`; bias is the zero-filled 8-float stage.
 */
function storeRowTail(c: usize, t: usize, nr: i32, bias: usize, lo: f32, hi: f32): void {
  for (let j = 0; j < nr; j++) {
    let v = load<f32>(t + ((<usize>j) << 2)) + load<f32>(bias + ((<usize>j) << 2));
    v = v < lo ? lo : v;
    v = hi < v ? hi : v;
    store<f32>(c + ((<usize>j) << 2), v);
  }
}

/** Epilogue of one 8-wide row: (+C when addC) (+bias) then clamp; two vector stores. */
function storeRow8(
  c: usize,
  x0: v128,
  x1: v128,
  addC: bool,
  bias0: v128,
  bias1: v128,
  lo: v128,
  hi: v128,
): void {
  if (addC) {
    x0 = f32x4.add(x0, v128.load(c));
    x1 = f32x4.add(x1, v128.load(c, 16));
  }
  v128.store(c, f32x4.pmin(f32x4.pmax(f32x4.add(x0, bias0), lo), hi));
  v128.store(c, f32x4.pmin(f32x4.pmax(f32x4.add(x1, bias1), lo), hi), 16);
}

/** y[N,OH,OW,F] = clamp(conv(x, w) + bias, lo, hi). Requires implicitForwardApplies. */
export function implicitForward(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  KH: i32,
  KW: i32,
  SH: i32,
  SW: i32,
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
  const Hp = (OH - 1) * SH + KH;
  const Wp = (OW - 1) * SW + KW;
  const kdim = KH * KW * C;
  const pixels = OH * OW;
  const tile = alignUp64(scratch);
  const biasStage = tile + 128;
  const xp = alignUp64(biasStage + 32);
  const packed = alignUp64(xp + ((<usize>(Hp * Wp * C)) << 2));
  packWeights(kdim, F, w, packed);
  const vlo = f32x4.splat(lo);
  const vhi = f32x4.splat(hi);
  const kwBytes = (<usize>(KW * C)) << 2; // one kernel row's contiguous run in xp
  const khBytes = (<usize>(Wp * C)) << 2;
  const pixStep = (<usize>(SW * C)) << 2;
  const rowStep = (<usize>(SH * Wp * C)) << 2;
  const ldc = (<usize>F) << 2;
  for (let n = 0; n < N; n++) {
    padImage(x + ((<usize>(n * H * W * C)) << 2), H, W, C, padT, padL, Hp, Wp, xp);
    const yImg = y + ((<usize>(n * pixels * F)) << 2);
    for (let j0 = 0; j0 < F; j0 += 8) {
      const nr = min(8, F - j0);
      const pb = packed + ((<usize>(j0 * kdim)) << 2);
      let bias0 = f32x4.splat(0);
      let bias1 = bias0;
      // The bias of a panel narrower than 8 is staged zero-filled (no read past the tensor).
      v128.store(biasStage, bias0);
      v128.store(biasStage, bias0, 16);
      if (bias != 0) {
        if (nr == 8) {
          bias0 = v128.load(bias + ((<usize>j0) << 2));
          bias1 = v128.load(bias + ((<usize>j0) << 2), 16);
        } else
          for (let j = 0; j < nr; j++)
            store<f32>(biasStage + ((<usize>j) << 2), load<f32>(bias + ((<usize>(j0 + j)) << 2)));
      }
      // Window origins of the tile's 4 pixels, walked in raster order.
      let oh = 0;
      let ow = 0;
      for (let r = 0; r < pixels; r += 4) {
        const mr = min(4, pixels - r);
        const p0 = xp + <usize>oh * rowStep + <usize>ow * pixStep;
        if (++ow == OW) {
          ow = 0;
          oh++;
        }
        let p1 = p0;
        let p2 = p0;
        let p3 = p0;
        // Pixels past the end repeat pixel 0; their rows are computed but never stored.
        if (mr > 1) {
          p1 = xp + <usize>oh * rowStep + <usize>ow * pixStep;
          if (++ow == OW) {
            ow = 0;
            oh++;
          }
        }
        if (mr > 2) {
          p2 = xp + <usize>oh * rowStep + <usize>ow * pixStep;
          if (++ow == OW) {
            ow = 0;
            oh++;
          }
        }
        if (mr > 3) {
          p3 = xp + <usize>oh * rowStep + <usize>ow * pixStep;
          if (++ow == OW) {
            ow = 0;
            oh++;
          }
        }
        let c00 = f32x4.splat(0);
        let c01 = c00;
        let c10 = c00;
        let c11 = c00;
        let c20 = c00;
        let c21 = c00;
        let c30 = c00;
        let c31 = c00;
        let b = pb;
        for (let kh = 0; kh < KH; kh++) {
          let o = <usize>kh * khBytes;
          const oEnd = o + kwBytes;
          while (o < oEnd) {
            const b0 = v128.load(b);
            const b1 = v128.load(b, 16);
            let av = v128.load32_splat(p0 + o);
            c00 = Isa.madd(av, b0, c00);
            c01 = Isa.madd(av, b1, c01);
            av = v128.load32_splat(p1 + o);
            c10 = Isa.madd(av, b0, c10);
            c11 = Isa.madd(av, b1, c11);
            av = v128.load32_splat(p2 + o);
            c20 = Isa.madd(av, b0, c20);
            c21 = Isa.madd(av, b1, c21);
            av = v128.load32_splat(p3 + o);
            c30 = Isa.madd(av, b0, c30);
            c31 = Isa.madd(av, b1, c31);
            o += 4;
            b += 32;
          }
        }
        const c = yImg + <usize>r * ldc + ((<usize>j0) << 2);
        if (nr < 8) {
          // A last panel of F % 8 columns: staged, then only its nr columns stored.
          stageTile(tile, c00, c01, c10, c11, c20, c21, c30, c31);
          for (let i = 0; i < mr; i++)
            storeRowTail(c + <usize>i * ldc, tile + ((<usize>i) << 5), nr, biasStage, lo, hi);
        } else if (mr == 4) {
          storeRow8(c, c00, c01, false, bias0, bias1, vlo, vhi);
          storeRow8(c + ldc, c10, c11, false, bias0, bias1, vlo, vhi);
          storeRow8(c + 2 * ldc, c20, c21, false, bias0, bias1, vlo, vhi);
          storeRow8(c + 3 * ldc, c30, c31, false, bias0, bias1, vlo, vhi);
        } else {
          storeRow8(c, c00, c01, false, bias0, bias1, vlo, vhi);
          if (mr > 1) storeRow8(c + ldc, c10, c11, false, bias0, bias1, vlo, vhi);
          if (mr > 2) storeRow8(c + 2 * ldc, c20, c21, false, bias0, bias1, vlo, vhi);
        }
      }
    }
  }
}

/** dw[KH,KW,C,F] = sum over images and pixels of patch x dy (overwritten). Requires implicitFilterApplies. */
export function implicitBackwardFilter(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  KH: i32,
  KW: i32,
  SH: i32,
  SW: i32,
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
  const Hp = (OH - 1) * SH + KH;
  const Wp = (OW - 1) * SW + KW;
  const kdim = KH * KW * C;
  const tile = alignUp64(scratch);
  const xp = alignUp64(tile + 128 + 32);
  // dy's last F % 8 columns, zero-filled to 8 per pixel, so the tail panel reads 8 floats a pixel
  // from a buffer that has them (dy's rows are F wide and end where the tensor ends).
  const stage = alignUp64(xp + ((<usize>(Hp * Wp * C)) << 2));
  const tailJ0 = F & ~7;
  const zero = f32x4.splat(0);
  const none = f32x4.splat(-Infinity);
  const all = f32x4.splat(Infinity);
  const kwC = KW * C;
  const pixStep = (<usize>(SW * C)) << 2;
  const rowStep = (<usize>(SH * Wp * C)) << 2;
  const dyStep = (<usize>F) << 2;
  const ldc = (<usize>F) << 2;
  memory.fill(dw, 0, (<usize>(kdim * F)) << 2);
  for (let n = 0; n < N; n++) {
    padImage(x + ((<usize>(n * H * W * C)) << 2), H, W, C, padT, padL, Hp, Wp, xp);
    const dyImg = dy + ((<usize>(n * OH * OW * F)) << 2);
    if (tailJ0 < F)
      for (let p = 0; p < OH * OW; p++) {
        const d = stage + ((<usize>p) << 5);
        v128.store(d, zero);
        v128.store(d, zero, 16);
        const s = dyImg + ((<usize>(p * F + tailJ0)) << 2);
        for (let j = 0; j < F - tailJ0; j++)
          store<f32>(d + ((<usize>j) << 2), load<f32>(s + ((<usize>j) << 2)));
      }
    for (let q0 = 0; q0 < kdim; q0 += 4) {
      const mr = min(4, kdim - q0);
      // Tap q = (kh*KW + kw)*C + c sits at kh*Wp*C + (kw*C + c) from a window's origin.
      const a0 = xp + ((<usize>((q0 / kwC) * Wp * C + (q0 % kwC))) << 2);
      let a1 = a0;
      let a2 = a0;
      let a3 = a0;
      if (mr > 1) a1 = xp + ((<usize>(((q0 + 1) / kwC) * Wp * C + ((q0 + 1) % kwC))) << 2);
      if (mr > 2) a2 = xp + ((<usize>(((q0 + 2) / kwC) * Wp * C + ((q0 + 2) % kwC))) << 2);
      if (mr > 3) a3 = xp + ((<usize>(((q0 + 3) / kwC) * Wp * C + ((q0 + 3) % kwC))) << 2);
      for (let j0 = 0; j0 < F; j0 += 8) {
        let c00 = zero;
        let c01 = zero;
        let c10 = zero;
        let c11 = zero;
        let c20 = zero;
        let c21 = zero;
        let c30 = zero;
        let c31 = zero;
        const nr = min(8, F - j0);
        let b = dyImg + ((<usize>j0) << 2);
        let bStep = dyStep;
        if (nr < 8) {
          b = stage;
          bStep = 32;
        }
        for (let oh = 0; oh < OH; oh++) {
          let o = <usize>oh * rowStep;
          const oEnd = o + <usize>OW * pixStep;
          while (o < oEnd) {
            const b0 = v128.load(b);
            const b1 = v128.load(b, 16);
            let av = v128.load32_splat(a0 + o);
            c00 = Isa.madd(av, b0, c00);
            c01 = Isa.madd(av, b1, c01);
            av = v128.load32_splat(a1 + o);
            c10 = Isa.madd(av, b0, c10);
            c11 = Isa.madd(av, b1, c11);
            av = v128.load32_splat(a2 + o);
            c20 = Isa.madd(av, b0, c20);
            c21 = Isa.madd(av, b1, c21);
            av = v128.load32_splat(a3 + o);
            c30 = Isa.madd(av, b0, c30);
            c31 = Isa.madd(av, b1, c31);
            o += pixStep;
            b += bStep;
          }
        }
        const c = dw + <usize>q0 * ldc + ((<usize>j0) << 2);
        if (nr < 8) {
          // Only nr columns of dw's rows are this panel's: staged, then added one by one with
          // storeRow8's operations (+C, +0 bias, an unbounded clamp that keeps NaN).
          stageTile(tile, c00, c01, c10, c11, c20, c21, c30, c31);
          for (let i = 0; i < mr; i++) {
            const row = c + <usize>i * ldc;
            const t = tile + ((<usize>i) << 5);
            for (let j = 0; j < nr; j++) {
              const at = row + ((<usize>j) << 2);
              store<f32>(at, load<f32>(t + ((<usize>j) << 2)) + load<f32>(at) + <f32>0);
            }
          }
          continue;
        }
        storeRow8(c, c00, c01, true, zero, zero, none, all);
        if (mr > 1) storeRow8(c + ldc, c10, c11, true, zero, zero, none, all);
        if (mr > 2) storeRow8(c + 2 * ldc, c20, c21, true, zero, zero, none, all);
        if (mr > 3) storeRow8(c + 3 * ldc, c30, c31, true, zero, zero, none, all);
      }
    }
  }
}
