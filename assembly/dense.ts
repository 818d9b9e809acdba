// Dense (fully connected) layer: x[B,In], w[In,Out] (the Keras/TF.js kernel layout), b[Out],
// y[B,Out]. Forward and backward are three GEMMs with different transposes, all through gemm_f32,
// whose packing makes the transposed operands as fast as the plain one.
import { gemm_f32, gemm_scratch_bytes } from "./gemm";

/** Scratch bytes for dense_fwd_f32 and dense_bwd_f32: the largest of their three GEMMs. */
export function dense_scratch_bytes(B: i32, In: i32, Out: i32): i32 {
  return max(
    gemm_scratch_bytes(B, Out, In), // y = x.w
    max(
      gemm_scratch_bytes(B, In, Out), // dx = dy.w^T
      gemm_scratch_bytes(In, Out, B), // dw = x^T.dy
    ),
  );
}

/** y[B,Out] = clamp(x[B,In].w[In,Out] + b[Out], lo, hi); b == 0 means no bias. */
export function dense_fwd_f32(
  B: i32,
  In: i32,
  Out: i32,
  x: usize,
  w: usize,
  b: usize,
  y: usize,
  lo: f32,
  hi: f32,
  scratch: usize,
): void {
  gemm_f32(B, Out, In, x, In, 1, w, Out, 1, y, Out, b, lo, hi, 0, scratch);
}

/**
 * dx[B,In] = dy[B,Out].w^T (skipped when dx == 0); dw[In,Out] = x^T.dy (overwritten);
 * db[Out] = sum over rows of dy (skipped when db == 0).
 */
export function dense_bwd_f32(
  B: i32,
  In: i32,
  Out: i32,
  x: usize,
  w: usize,
  dy: usize,
  dx: usize,
  dw: usize,
  db: usize,
  scratch: usize,
): void {
  // w^T as a [Out,In] operand: element (o,i) lives at w + 4*(i*Out + o), so rsB = 1, csB = Out.
  if (dx != 0) {
    gemm_f32(B, In, Out, dy, Out, 1, w, 1, Out, dx, In, 0, -Infinity, Infinity, 0, scratch);
  }
  // x^T as an [In,B] operand: element (i,r) at x + 4*(r*In + i), so rsA = 1, csA = In.
  gemm_f32(In, Out, B, x, 1, In, dy, Out, 1, dw, Out, 0, -Infinity, Infinity, 0, scratch);
  if (db != 0) bias_grad_f32(B, Out, dy, db);
}

/** db[C] = sum over R rows of dy[R,C]: the bias gradient of Dense (R = batch) and Conv2D (R = N*OH*OW). */
export function bias_grad_f32(R: i32, C: i32, dy: usize, db: usize): void {
  const rowBytes = (<usize>C) << 2;
  let j = 0;
  // 16 columns at a time: four independent accumulators hide the add latency.
  for (; j + 16 <= C; j += 16) {
    let s0 = f32x4.splat(0);
    let s1 = s0;
    let s2 = s0;
    let s3 = s0;
    let p = dy + ((<usize>j) << 2);
    for (let r = 0; r < R; r++) {
      s0 = f32x4.add(s0, v128.load(p));
      s1 = f32x4.add(s1, v128.load(p, 16));
      s2 = f32x4.add(s2, v128.load(p, 32));
      s3 = f32x4.add(s3, v128.load(p, 48));
      p += rowBytes;
    }
    const d = db + ((<usize>j) << 2);
    v128.store(d, s0);
    v128.store(d, s1, 16);
    v128.store(d, s2, 32);
    v128.store(d, s3, 48);
  }
  for (; j + 4 <= C; j += 4) {
    let s = f32x4.splat(0);
    let p = dy + ((<usize>j) << 2);
    for (let r = 0; r < R; r++) {
      s = f32x4.add(s, v128.load(p));
      p += rowBytes;
    }
    v128.store(db + ((<usize>j) << 2), s);
  }
  for (; j < C; j++) {
    let s: f32 = 0;
    let p = dy + ((<usize>j) << 2);
    for (let r = 0; r < R; r++) {
      s += load<f32>(p);
      p += rowBytes;
    }
    store<f32>(db + ((<usize>j) << 2), s);
  }
}

/** Scalar twin of bias_grad_f32 (test oracle). */
export function bias_grad_f32_scalar(R: i32, C: i32, dy: usize, db: usize): void {
  for (let j = 0; j < C; j++) {
    let s: f32 = 0;
    for (let r = 0; r < R; r++) s += load<f32>(dy + ((<usize>r * C + j) << 2));
    store<f32>(db + ((<usize>j) << 2), s);
  }
}

/** Scalar twin of dense_fwd_f32 (test oracle). */
export function dense_fwd_f32_scalar(
  B: i32,
  In: i32,
  Out: i32,
  x: usize,
  w: usize,
  b: usize,
  y: usize,
  lo: f32,
  hi: f32,
  scratch: usize,
): void {
  for (let r = 0; r < B; r++) {
    for (let o = 0; o < Out; o++) {
      let s: f32 = b != 0 ? load<f32>(b + ((<usize>o) << 2)) : 0;
      for (let i = 0; i < In; i++) {
        s += load<f32>(x + ((<usize>r * In + i) << 2)) * load<f32>(w + ((<usize>i * Out + o) << 2));
      }
      s = s < lo ? lo : s;
      s = hi < s ? hi : s;
      store<f32>(y + ((<usize>r * Out + o) << 2), s);
    }
  }
}

/** Scalar twin of dense_bwd_f32 (test oracle). */
export function dense_bwd_f32_scalar(
  B: i32,
  In: i32,
  Out: i32,
  x: usize,
  w: usize,
  dy: usize,
  dx: usize,
  dw: usize,
  db: usize,
  scratch: usize,
): void {
  if (dx != 0) {
    for (let r = 0; r < B; r++) {
      for (let i = 0; i < In; i++) {
        let s: f32 = 0;
        for (let o = 0; o < Out; o++) {
          s +=
            load<f32>(dy + ((<usize>r * Out + o) << 2)) *
            load<f32>(w + ((<usize>i * Out + o) << 2));
        }
        store<f32>(dx + ((<usize>r * In + i) << 2), s);
      }
    }
  }
  for (let i = 0; i < In; i++) {
    for (let o = 0; o < Out; o++) {
      let s: f32 = 0;
      for (let r = 0; r < B; r++) {
        s +=
          load<f32>(x + ((<usize>r * In + i) << 2)) * load<f32>(dy + ((<usize>r * Out + o) << 2));
      }
      store<f32>(dw + ((<usize>i * Out + o) << 2), s);
    }
  }
  if (db != 0) {
    for (let o = 0; o < Out; o++) {
      let s: f32 = 0;
      for (let r = 0; r < B; r++) s += load<f32>(dy + ((<usize>r * Out + o) << 2));
      store<f32>(db + ((<usize>o) << 2), s);
    }
  }
}
