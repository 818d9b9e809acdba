// Conv2D, NHWC: x[N,H,W,C], w[KH,KW,C,F] (TF's HWIO layout), bias[F], y[N,OH,OW,F].
// padT/padL are the zero rows/cols before the image (TF "same" puts any odd one after; the host
// computes OH/OW).
//
// Each pass picks one of three strategies (measured at the reference CNN's layers, batch 64):
//   Winograd F(2x2,3x3)  3x3 stride 1, C and F >= 16 (conv2d_winograd.ts): 2.25x fewer flops;
//                        14x14x32->64: ~8 ms per pass vs ~14-15 ms for im2col + GEMM.
//   implicit GEMM        few input channels (conv2d_implicit.ts): no im2col copy;
//                        28x28x1->32: fwd 1.6 vs 2.7 ms, filter gradient 1.8 vs 3.4 ms.
//   im2col + GEMM        everything else, below: "rows" = (n, oh, ow) in chunks so the column
//                        buffer stays ~256 KB (L2-resident between im2col writing it and the GEMM
//                        packing it):
//     forward      y[rows,F]         = cols[rows,KH*KW*C] . w[KH*KW*C,F]  (+bias, clamp: fused)
//     bwd data     dcols[rows,KHKWC] = dy[rows,F] . w^T, then col2im scatter-adds dcols into dx
//     bwd filter   dw[KHKWC,F]      += cols^T . dy[rows,F]               (accumulated over chunks)
//   HWIO flattened is already the [KH*KW*C, F] GEMM operand, so weights are never rearranged;
//   w^T (data gradient), and w (forward) when there are several chunks, are packed once per call
//   for all of them (gemm_f32_prepacked) instead of by each chunk's GEMM: 5x5 convs 6-9% faster.
// The scalar twins at the end are the direct 7-nested loops, the oracle for all three.
import {
  gemm_f32,
  gemm_f32_prepacked,
  gemm_pack_b_f32,
  gemm_packed_b_floats,
  gemm_scratch_bytes,
} from "./gemm";
import { bias_grad_f32 } from "./dense";
import {
  winogradApplies,
  winogradBackwardData,
  winogradBackwardDataApplies,
  winogradBackwardFilter,
  winogradForward,
  winogradForwardPacked,
  winogradPackWeights,
  winograd_packed_weights_floats,
  winograd_scratch_bytes,
} from "./conv2d_winograd";
import {
  implicitBackwardFilter,
  implicitFilterApplies,
  implicitForwardApplies,
  implicitForward,
  implicit_scratch_bytes,
} from "./conv2d_implicit";

/** Floats of the im2col chunk (256 KB): fits L2 with the GEMM's packed panels. */
const COLS_FLOATS: i32 = 1 << 16;

function alignUp64(p: usize): usize {
  return (p + 63) & ~(<usize>63);
}

/** Rows (output pixels) per im2col chunk: a multiple of 4 so only the last chunk has an M tail. */
function chunkRows(rows: i32, kdim: i32): i32 {
  let rc = (COLS_FLOATS / max(kdim, 1)) & ~3;
  if (rc < 4) rc = 4;
  return rows < rc ? rows : rc;
}

/** True when the convolution is a plain [rows,C].[C,F] product on x itself (1x1, stride 1, no pad). */
function isPointwise(
  H: i32,
  W: i32,
  KH: i32,
  KW: i32,
  SH: i32,
  SW: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
): bool {
  return KH == 1 && KW == 1 && SH == 1 && SW == 1 && padT == 0 && padL == 0 && OH == H && OW == W;
}

export function conv2d_scratch_bytes(
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
): i32 {
  const rows = N * OH * OW;
  const kdim = KH * KW * C;
  const rc = max(chunkRows(rows, kdim), 1);
  const colsBytes = <i32>alignUp64((<usize>(rc * kdim)) << 2);
  let g = max(
    gemm_scratch_bytes(rc, F, kdim),
    max(gemm_scratch_bytes(rc, kdim, F), gemm_scratch_bytes(kdim, F, rc)),
  );
  if (isPointwise(H, W, KH, KW, SH, SW, padT, padL, OH, OW)) {
    // The whole batch is one GEMM on x itself.
    g = max(
      g,
      max(
        gemm_scratch_bytes(rows, F, C),
        max(gemm_scratch_bytes(rows, C, F), gemm_scratch_bytes(C, F, rows)),
      ),
    );
  }
  // w^T (data gradient) is packed once for all chunks, and w (forward) when there are several.
  const packFloats = max(
    rows > rc ? gemm_packed_b_floats(kdim, F) : 0,
    gemm_packed_b_floats(F, kdim),
  );
  const packBytes = <i32>alignUp64((<usize>packFloats) << 2);
  let bytes = 64 + colsBytes + packBytes + g;
  if (winogradApplies(C, F, KH, KW, SH, SW)) {
    bytes = max(bytes, winograd_scratch_bytes(N, H, W, OH, OW, C, F));
  }
  if (implicitForwardApplies(C, KH, KW, SH, SW, OH, OW, F)) {
    bytes = max(bytes, implicit_scratch_bytes(C, KH, KW, SH, SW, OH, OW, F));
  }
  return bytes;
}

// ---- row copies ----------------------------------------------------------------------------------

function copyFloats(dst: usize, src: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4)
    v128.store(dst + ((<usize>i) << 2), v128.load(src + ((<usize>i) << 2)));
  for (; i < n; i++) store<f32>(dst + ((<usize>i) << 2), load<f32>(src + ((<usize>i) << 2)));
}

function zeroFloats(dst: usize, n: i32): void {
  const z = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(dst + ((<usize>i) << 2), z);
  for (; i < n; i++) store<f32>(dst + ((<usize>i) << 2), 0);
}

/** dst[0..n) += src[0..n). */
function addFloats(dst: usize, src: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const d = dst + ((<usize>i) << 2);
    v128.store(d, f32x4.add(v128.load(d), v128.load(src + ((<usize>i) << 2))));
  }
  for (; i < n; i++) {
    const d = dst + ((<usize>i) << 2);
    store<f32>(d, load<f32>(d) + load<f32>(src + ((<usize>i) << 2)));
  }
}

/**
 * cols[m, KH*KW*C] <- the receptive fields of output rows r0..r0+m (row = (n*OH + oh)*OW + ow),
 * zeros where the window hangs over the padding. Each kernel row's in-image span is one
 * contiguous run of x (kw consecutive, C innermost), copied in one go.
 */
function im2col(
  r0: i32,
  m: i32,
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
  x: usize,
  cols: usize,
): void {
  const ohw = OH * OW;
  let n = r0 / ohw;
  let oh = (r0 - n * ohw) / OW;
  let ow = r0 - n * ohw - oh * OW;
  const pixBytes = (<usize>C) << 2;
  const imgBytes = <usize>(H * W) * pixBytes;
  let dst = cols;
  for (let r = 0; r < m; r++) {
    const ih0 = oh * SH - padT;
    const iw0 = ow * SW - padL;
    // In-image kw range [kwLo, kwHi): the same for every kernel row.
    const kwLo = iw0 < 0 ? -iw0 : 0;
    const kwHi = W - iw0 < KW ? W - iw0 : KW;
    const img = x + <usize>n * imgBytes;
    for (let kh = 0; kh < KH; kh++) {
      const ih = ih0 + kh;
      if (ih < 0 || ih >= H || kwHi <= kwLo) {
        zeroFloats(dst, KW * C);
      } else {
        zeroFloats(dst, kwLo * C);
        copyFloats(
          dst + <usize>(kwLo * C) * 4,
          img + <usize>(ih * W + iw0 + kwLo) * pixBytes,
          (kwHi - kwLo) * C,
        );
        zeroFloats(dst + <usize>(kwHi * C) * 4, (KW - kwHi) * C);
      }
      dst += <usize>KW * pixBytes;
    }
    if (++ow == OW) {
      ow = 0;
      if (++oh == OH) {
        oh = 0;
        n++;
      }
    }
  }
}

/** dx += scatter of dcols[m, KH*KW*C] (the adjoint of im2col): padding entries are dropped. */
function col2imAdd(
  r0: i32,
  m: i32,
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
  dcols: usize,
  dx: usize,
): void {
  const ohw = OH * OW;
  let n = r0 / ohw;
  let oh = (r0 - n * ohw) / OW;
  let ow = r0 - n * ohw - oh * OW;
  const pixBytes = (<usize>C) << 2;
  const imgBytes = <usize>(H * W) * pixBytes;
  let src = dcols;
  for (let r = 0; r < m; r++) {
    const ih0 = oh * SH - padT;
    const iw0 = ow * SW - padL;
    const kwLo = iw0 < 0 ? -iw0 : 0;
    const kwHi = W - iw0 < KW ? W - iw0 : KW;
    const img = dx + <usize>n * imgBytes;
    for (let kh = 0; kh < KH; kh++) {
      const ih = ih0 + kh;
      if (ih >= 0 && ih < H && kwHi > kwLo) {
        addFloats(
          img + <usize>(ih * W + iw0 + kwLo) * pixBytes,
          src + <usize>(kwLo * C) * 4,
          (kwHi - kwLo) * C,
        );
      }
      src += <usize>KW * pixBytes;
    }
    if (++ow == OW) {
      ow = 0;
      if (++oh == OH) {
        oh = 0;
        n++;
      }
    }
  }
}

// ---- forward -------------------------------------------------------------------------------------

/** y[N,OH,OW,F] = clamp(conv(x, w) + bias, lo, hi); bias == 0 means none. */
export function conv2d_nhwc_fwd_f32(
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
  const rows = N * OH * OW;
  const kdim = KH * KW * C;
  if (rows <= 0 || F <= 0) return;
  if (winogradApplies(C, F, KH, KW, SH, SW)) {
    winogradForward(N, H, W, C, padT, padL, OH, OW, F, x, w, bias, y, lo, hi, scratch);
    return;
  }
  if (implicitForwardApplies(C, KH, KW, SH, SW, OH, OW, F)) {
    implicitForward(
      N,
      H,
      W,
      C,
      KH,
      KW,
      SH,
      SW,
      padT,
      padL,
      OH,
      OW,
      F,
      x,
      w,
      bias,
      y,
      lo,
      hi,
      scratch,
    );
    return;
  }
  const rc = chunkRows(rows, kdim);
  const cols = alignUp64(scratch);
  const gs = cols + alignUp64((<usize>(rc * kdim)) << 2);
  if (isPointwise(H, W, KH, KW, SH, SW, padT, padL, OH, OW)) {
    gemm_f32(rows, F, C, x, C, 1, w, F, 1, y, F, bias, lo, hi, 0, gs);
    return;
  }
  if (rows > rc) {
    // Several chunks: w packed once, not by every chunk's GEMM (with a deep kdim a chunk has few
    // rows, and packing all of w for each cost 7-9% of the conv at 14x14x64 5x5 -> 128).
    const pb = gs;
    const gp = pb + alignUp64((<usize>gemm_packed_b_floats(kdim, F)) << 2);
    gemm_pack_b_f32(kdim, F, w, F, 1, pb);
    for (let r0 = 0; r0 < rows; r0 += rc) {
      const m = min(rc, rows - r0);
      im2col(r0, m, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, x, cols);
      gemm_f32_prepacked(
        m,
        F,
        kdim,
        cols,
        kdim,
        1,
        pb,
        y + ((<usize>r0 * F) << 2),
        F,
        bias,
        lo,
        hi,
        0,
        gp,
      );
    }
    return;
  }
  // One chunk: gemm_f32 packs w inside its first row block's tiles (fused packing).
  im2col(0, rows, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, x, cols);
  gemm_f32(rows, F, kdim, cols, kdim, 1, w, F, 1, y, F, bias, lo, hi, 0, gs);
}

// ---- forward with weights prepared once (inference) ---------------------------------------------

/**
 * Floats of the prepared weights conv2d_prepare_weights_f32 makes for this conv, or 0 when its
 * forward pass has none (not the Winograd path: it reads w as it is).
 */
export function conv2d_prepared_weights_floats(
  C: i32,
  F: i32,
  KH: i32,
  KW: i32,
  SH: i32,
  SW: i32,
): i32 {
  return winogradApplies(C, F, KH, KW, SH, SW) ? winograd_packed_weights_floats(C, F) : 0;
}

/**
 * dst = the weights w[3,3,C,F] of a conv that takes the Winograd path, transformed and packed once
 * (an inference engine's weights do not change between calls; conv2d_nhwc_fwd_f32 transforms and
 * packs them on every call). scratch: conv2d_scratch_bytes of the conv, any batch.
 */
export function conv2d_prepare_weights_f32(
  C: i32,
  F: i32,
  w: usize,
  dst: usize,
  scratch: usize,
): void {
  winogradPackWeights(C, F, w, dst, scratch);
}

/**
 * conv2d_nhwc_fwd_f32 of a 3x3 stride-1 conv whose conv2d_prepared_weights_floats > 0, from its
 * prepared weights: the same bits, without the per-call weight transform and packing.
 */
export function conv2d_nhwc_fwd_prepared_f32(
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
  prepared: usize,
  bias: usize,
  y: usize,
  lo: f32,
  hi: f32,
  scratch: usize,
): void {
  winogradForwardPacked(N, H, W, C, padT, padL, OH, OW, F, x, prepared, bias, y, lo, hi, scratch);
}

// ---- backward ------------------------------------------------------------------------------------

/** dx[N,H,W,C] = d(loss)/dx given dy[N,OH,OW,F] (overwritten). */
export function conv2d_nhwc_bwd_data_f32(
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
  dy: usize,
  w: usize,
  dx: usize,
  scratch: usize,
): void {
  const rows = N * OH * OW;
  const kdim = KH * KW * C;
  if (winogradBackwardDataApplies(C, F, KH, KW, SH, SW, padT, padL)) {
    winogradBackwardData(N, H, W, C, padT, padL, OH, OW, F, dy, w, dx, scratch);
    return;
  }
  const rc = chunkRows(rows, kdim);
  const dcols = alignUp64(scratch);
  const gs = dcols + alignUp64((<usize>(rc * kdim)) << 2);
  // w^T as an [F, KH*KW*C] operand: element (f,q) at w + 4*(q*F + f), so rsB = 1, csB = F.
  if (isPointwise(H, W, KH, KW, SH, SW, padT, padL, OH, OW)) {
    gemm_f32(rows, C, F, dy, F, 1, w, 1, F, dx, C, 0, -Infinity, Infinity, 0, gs);
    return;
  }
  // Input pixels no window touches (stride > kernel, or padding-free borders) get no gradient.
  memory.fill(dx, 0, (<usize>(N * H * W * C)) << 2);
  // w^T packed once for all chunks (w^T is not row-major, so gemm_f32 would pack it in a pass of
  // its own anyway, in every chunk).
  const pb = gs;
  const gp = pb + alignUp64((<usize>gemm_packed_b_floats(F, kdim)) << 2);
  gemm_pack_b_f32(F, kdim, w, 1, F, pb);
  for (let r0 = 0; r0 < rows; r0 += rc) {
    const m = min(rc, rows - r0);
    gemm_f32_prepacked(
      m,
      kdim,
      F,
      dy + ((<usize>r0 * F) << 2),
      F,
      1,
      pb,
      dcols,
      kdim,
      0,
      -Infinity,
      Infinity,
      0,
      gp,
    );
    col2imAdd(r0, m, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, dcols, dx);
  }
}

/** dw[KH,KW,C,F] = d(loss)/dw (overwritten); db[F] = sum of dy over N,OH,OW (skipped when db == 0). */
export function conv2d_nhwc_bwd_filter_f32(
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
  db: usize,
  scratch: usize,
): void {
  const rows = N * OH * OW;
  const kdim = KH * KW * C;
  const rc = chunkRows(rows, kdim);
  const cols = alignUp64(scratch);
  const gs = cols + alignUp64((<usize>(rc * kdim)) << 2);
  if (db != 0) bias_grad_f32(rows, F, dy, db);
  if (winogradApplies(C, F, KH, KW, SH, SW)) {
    winogradBackwardFilter(N, H, W, C, padT, padL, OH, OW, F, x, dy, dw, scratch);
    return;
  }
  if (rows <= 0) {
    memory.fill(dw, 0, (<usize>(kdim * F)) << 2);
    return;
  }
  if (implicitFilterApplies(C, KH, KW, SH, SW, OH, OW, F)) {
    implicitBackwardFilter(N, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, F, x, dy, dw, scratch);
    return;
  }
  // cols^T as a [KH*KW*C, m] operand: element (q,r) at cols + 4*(r*kdim + q): rsA = 1, csA = kdim.
  if (isPointwise(H, W, KH, KW, SH, SW, padT, padL, OH, OW)) {
    gemm_f32(C, F, rows, x, 1, C, dy, F, 1, dw, F, 0, -Infinity, Infinity, 0, gs);
    return;
  }
  for (let r0 = 0; r0 < rows; r0 += rc) {
    const m = min(rc, rows - r0);
    im2col(r0, m, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, x, cols);
    gemm_f32(
      kdim,
      F,
      m,
      cols,
      1,
      kdim,
      dy + ((<usize>r0 * F) << 2),
      F,
      1,
      dw,
      F,
      0,
      -Infinity,
      Infinity,
      r0 > 0 ? 1 : 0,
      gs,
    );
  }
}

// ---- scalar twins (test oracles): the direct 7-nested loops ---------------------------------------

export function conv2d_nhwc_fwd_f32_scalar(
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
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        for (let f = 0; f < F; f++) {
          let s: f32 = bias != 0 ? load<f32>(bias + ((<usize>f) << 2)) : 0;
          for (let kh = 0; kh < KH; kh++) {
            const ih = oh * SH - padT + kh;
            if (ih < 0 || ih >= H) continue;
            for (let kw = 0; kw < KW; kw++) {
              const iw = ow * SW - padL + kw;
              if (iw < 0 || iw >= W) continue;
              for (let c = 0; c < C; c++) {
                s +=
                  load<f32>(x + ((<usize>(((n * H + ih) * W + iw) * C + c)) << 2)) *
                  load<f32>(w + ((<usize>(((kh * KW + kw) * C + c) * F + f)) << 2));
              }
            }
          }
          s = s < lo ? lo : s;
          s = hi < s ? hi : s;
          store<f32>(y + ((<usize>(((n * OH + oh) * OW + ow) * F + f)) << 2), s);
        }
      }
    }
  }
}

export function conv2d_nhwc_bwd_data_f32_scalar(
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
  dy: usize,
  w: usize,
  dx: usize,
  scratch: usize,
): void {
  for (let i = 0; i < N * H * W * C; i++) store<f32>(dx + ((<usize>i) << 2), 0);
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        for (let f = 0; f < F; f++) {
          const g = load<f32>(dy + ((<usize>(((n * OH + oh) * OW + ow) * F + f)) << 2));
          for (let kh = 0; kh < KH; kh++) {
            const ih = oh * SH - padT + kh;
            if (ih < 0 || ih >= H) continue;
            for (let kw = 0; kw < KW; kw++) {
              const iw = ow * SW - padL + kw;
              if (iw < 0 || iw >= W) continue;
              for (let c = 0; c < C; c++) {
                const p = dx + ((<usize>(((n * H + ih) * W + iw) * C + c)) << 2);
                store<f32>(
                  p,
                  load<f32>(p) +
                    g * load<f32>(w + ((<usize>(((kh * KW + kw) * C + c) * F + f)) << 2)),
                );
              }
            }
          }
        }
      }
    }
  }
}

export function conv2d_nhwc_bwd_filter_f32_scalar(
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
  db: usize,
  scratch: usize,
): void {
  for (let i = 0; i < KH * KW * C * F; i++) store<f32>(dw + ((<usize>i) << 2), 0);
  if (db != 0) for (let f = 0; f < F; f++) store<f32>(db + ((<usize>f) << 2), 0);
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        for (let f = 0; f < F; f++) {
          const g = load<f32>(dy + ((<usize>(((n * OH + oh) * OW + ow) * F + f)) << 2));
          if (db != 0) store<f32>(db + ((<usize>f) << 2), load<f32>(db + ((<usize>f) << 2)) + g);
          for (let kh = 0; kh < KH; kh++) {
            const ih = oh * SH - padT + kh;
            if (ih < 0 || ih >= H) continue;
            for (let kw = 0; kw < KW; kw++) {
              const iw = ow * SW - padL + kw;
              if (iw < 0 || iw >= W) continue;
              for (let c = 0; c < C; c++) {
                const p = dw + ((<usize>(((kh * KW + kw) * C + c) * F + f)) << 2);
                store<f32>(
                  p,
                  load<f32>(p) +
                    g * load<f32>(x + ((<usize>(((n * H + ih) * W + iw) * C + c)) << 2)),
                );
              }
            }
          }
        }
      }
    }
  }
}
