// Elementwise activations over n floats (x input, y output; y may alias x) and row-wise softmax
// over x[R,C], each forward next to its backward. Semantics follow TF.js: relu(NaN) = NaN,
// leakyRelu/elu switch at x > 0, softmax subtracts the row max. Tails (n % 4) run the same vector
// math on a partial vector, so a kernel gives the same result for an element wherever it sits.
// Scalar twins compute in float64 with Math.* and round once: they are the accuracy oracle.
import { F32x4Math, rowDivide_f32, rowExpShift_f32, rowMax_f32 } from "./f32x4_math";

/**
 * The per-vector bodies of the exp-based activations, shared by each kernel's main loop and its
 * tail. Static methods so @inline is valid syntax: with the inlined exp each is ~40 instructions
 * with two callers, which Binaryen would otherwise leave as a call per vector.
 */
class Lanes {
  /** x > 0 ? x : alpha*expm1(x) (expm1, not exp-1: that cancels for small negative x). */
  @inline static elu(v: v128, av: v128): v128 {
    return v128.bitselect(v, f32x4.mul(av, F32x4Math.expm1(v)), f32x4.gt(v, f32x4.splat(0)));
  }

  /**
   * x > 0 ? dy : dy*alpha*e^x. From x rather than as dy*(y+alpha): for x << 0, y+alpha cancels
   * (y ~ -alpha) and would leave the gradient with almost no correct digits.
   */
  @inline static eluGrad(v: v128, d: v128, av: v128): v128 {
    const neg = f32x4.mul(d, f32x4.mul(av, F32x4Math.exp(v)));
    return v128.bitselect(d, neg, f32x4.gt(v, f32x4.splat(0)));
  }

  /**
   * tanh|x| = -t/(t+2) with t = expm1(-2|x|) in (-1, 0]: never overflows, saturates to exactly 1
   * for large |x|, and keeps full relative accuracy near 0 (t ~ -2|x|) where 1 - 2/(e^2x + 1)
   * would cancel. The sign is copied back from x (so tanh(-0) = -0).
   */
  @inline static tanh(v: v128): v128 {
    const signBit = f32x4.splat(-0.0);
    const a = v128.andnot(v, signBit); // |v|
    const t = F32x4Math.expm1(f32x4.mul(a, f32x4.splat(-2)));
    const r = f32x4.div(f32x4.neg(t), f32x4.add(t, f32x4.splat(2)));
    return v128.or(r, v128.and(v, signBit));
  }

  /**
   * With e = exp(-|x|) in (0, 1]: 1/(1+e) for x >= 0 and e/(1+e) for x < 0. exp never
   * overflows and both tails keep full relative accuracy.
   */
  @inline static sigmoid(v: v128): v128 {
    const e = F32x4Math.exp(f32x4.neg(f32x4.abs(v)));
    const num = v128.bitselect(f32x4.splat(1), e, f32x4.ge(v, f32x4.splat(0)));
    return f32x4.div(num, f32x4.add(f32x4.splat(1), e));
  }
}

// ---- relu: y = x < 0 ? 0 : x ----------------------------------------------------------------

export function relu_fwd_f32(n: i32, x: usize, y: usize): void {
  const zero = f32x4.splat(0);
  let i = 0;
  // pmax(x, 0) is `x < 0 ? 0 : x`: one maxps, and NaN passes through as in TF.js.
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(y + o, f32x4.pmax(v128.load(x + o), zero));
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    const v = load<f32>(x + o);
    store<f32>(y + o, v < 0 ? 0 : v);
  }
}

/** dx = y > 0 ? dy : 0 (from the output, so the host may drop x). */
export function relu_bwd_f32(n: i32, y: usize, dy: usize, dx: usize): void {
  const zero = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(dx + o, v128.and(v128.load(dy + o), f32x4.gt(v128.load(y + o), zero)));
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    store<f32>(dx + o, load<f32>(y + o) > 0 ? load<f32>(dy + o) : 0);
  }
}

export function relu_fwd_f32_scalar(n: i32, x: usize, y: usize): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    const v = load<f32>(x + o);
    store<f32>(y + o, v < 0 ? 0 : v);
  }
}

export function relu_bwd_f32_scalar(n: i32, y: usize, dy: usize, dx: usize): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    store<f32>(dx + o, load<f32>(y + o) > 0 ? load<f32>(dy + o) : 0);
  }
}

// ---- leakyRelu: y = x > 0 ? x : alpha*x -------------------------------------------------------

export function leaky_relu_fwd_f32(n: i32, x: usize, y: usize, alpha: f32): void {
  const zero = f32x4.splat(0);
  const av = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    const v = v128.load(x + o);
    v128.store(y + o, v128.bitselect(v, f32x4.mul(v, av), f32x4.gt(v, zero)));
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    const v = load<f32>(x + o);
    store<f32>(y + o, v > 0 ? v : alpha * v);
  }
}

export function leaky_relu_bwd_f32(n: i32, x: usize, dy: usize, dx: usize, alpha: f32): void {
  const zero = f32x4.splat(0);
  const av = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    const d = v128.load(dy + o);
    v128.store(dx + o, v128.bitselect(d, f32x4.mul(d, av), f32x4.gt(v128.load(x + o), zero)));
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    const d = load<f32>(dy + o);
    store<f32>(dx + o, load<f32>(x + o) > 0 ? d : alpha * d);
  }
}

export function leaky_relu_fwd_f32_scalar(n: i32, x: usize, y: usize, alpha: f32): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    const v = load<f32>(x + o);
    store<f32>(y + o, v > 0 ? v : alpha * v);
  }
}

export function leaky_relu_bwd_f32_scalar(
  n: i32,
  x: usize,
  dy: usize,
  dx: usize,
  alpha: f32,
): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    const d = load<f32>(dy + o);
    store<f32>(dx + o, load<f32>(x + o) > 0 ? d : alpha * d);
  }
}

// ---- elu: y = x > 0 ? x : alpha*(e^x - 1) -----------------------------------------------------

export function elu_fwd_f32(n: i32, x: usize, y: usize, alpha: f32): void {
  const av = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(y + o, Lanes.elu(v128.load(x + o), av));
  }
  if (i < n) {
    const o = (<usize>i) << 2;
    F32x4Math.storePartial(y + o, Lanes.elu(F32x4Math.loadPartial(x + o, n - i), av), n - i);
  }
}

export function elu_bwd_f32(n: i32, x: usize, y: usize, dy: usize, dx: usize, alpha: f32): void {
  const av = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(dx + o, Lanes.eluGrad(v128.load(x + o), v128.load(dy + o), av));
  }
  if (i < n) {
    const o = (<usize>i) << 2;
    const k = n - i;
    F32x4Math.storePartial(
      dx + o,
      Lanes.eluGrad(F32x4Math.loadPartial(x + o, k), F32x4Math.loadPartial(dy + o, k), av),
      k,
    );
  }
}

export function elu_fwd_f32_scalar(n: i32, x: usize, y: usize, alpha: f32): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    const v = <f64>load<f32>(x + o);
    store<f32>(y + o, <f32>(v > 0 ? v : <f64>alpha * Math.expm1(v)));
  }
}

export function elu_bwd_f32_scalar(
  n: i32,
  x: usize,
  y: usize,
  dy: usize,
  dx: usize,
  alpha: f32,
): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    const v = <f64>load<f32>(x + o);
    const d = <f64>load<f32>(dy + o);
    store<f32>(dx + o, <f32>(v > 0 ? d : d * <f64>alpha * Math.exp(v)));
  }
}

// ---- tanh -----------------------------------------------------------------------------------

export function tanh_fwd_f32(n: i32, x: usize, y: usize): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(y + o, Lanes.tanh(v128.load(x + o)));
  }
  if (i < n) {
    const o = (<usize>i) << 2;
    F32x4Math.storePartial(y + o, Lanes.tanh(F32x4Math.loadPartial(x + o, n - i)), n - i);
  }
}

/** dx = dy*(1 - y^2). */
export function tanh_bwd_f32(n: i32, y: usize, dy: usize, dx: usize): void {
  const one = f32x4.splat(1);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    const v = v128.load(y + o);
    v128.store(dx + o, f32x4.mul(v128.load(dy + o), f32x4.sub(one, f32x4.mul(v, v))));
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    const v = load<f32>(y + o);
    store<f32>(dx + o, load<f32>(dy + o) * (1 - v * v));
  }
}

export function tanh_fwd_f32_scalar(n: i32, x: usize, y: usize): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    store<f32>(y + o, <f32>Math.tanh(<f64>load<f32>(x + o)));
  }
}

export function tanh_bwd_f32_scalar(n: i32, y: usize, dy: usize, dx: usize): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    const v = <f64>load<f32>(y + o);
    store<f32>(dx + o, <f32>(<f64>load<f32>(dy + o) * (1 - v * v)));
  }
}

// ---- sigmoid --------------------------------------------------------------------------------

export function sigmoid_fwd_f32(n: i32, x: usize, y: usize): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(y + o, Lanes.sigmoid(v128.load(x + o)));
  }
  if (i < n) {
    const o = (<usize>i) << 2;
    F32x4Math.storePartial(y + o, Lanes.sigmoid(F32x4Math.loadPartial(x + o, n - i)), n - i);
  }
}

/** dx = dy*y*(1 - y). */
export function sigmoid_bwd_f32(n: i32, y: usize, dy: usize, dx: usize): void {
  const one = f32x4.splat(1);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    const v = v128.load(y + o);
    v128.store(dx + o, f32x4.mul(v128.load(dy + o), f32x4.mul(v, f32x4.sub(one, v))));
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    const v = load<f32>(y + o);
    store<f32>(dx + o, load<f32>(dy + o) * (v * (1 - v)));
  }
}

export function sigmoid_fwd_f32_scalar(n: i32, x: usize, y: usize): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    store<f32>(y + o, <f32>(1 / (1 + Math.exp(-(<f64>load<f32>(x + o))))));
  }
}

export function sigmoid_bwd_f32_scalar(n: i32, y: usize, dy: usize, dx: usize): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    const v = <f64>load<f32>(y + o);
    store<f32>(dx + o, <f32>(<f64>load<f32>(dy + o) * v * (1 - v)));
  }
}

// ---- softmax over rows of x[R,C] ------------------------------------------------------------
export function softmax_fwd_f32(R: i32, C: i32, x: usize, y: usize): void {
  const stride = (<usize>C) << 2;
  for (let r = 0; r < R; r++) {
    const xr = x + <usize>r * stride;
    const yr = y + <usize>r * stride;
    const s = rowExpShift_f32(C, xr, rowMax_f32(C, xr), yr);
    rowDivide_f32(C, yr, s);
  }
}

/** dx = y*(dy - sum_j dy_j*y_j), row-wise. */
export function softmax_bwd_f32(R: i32, C: i32, y: usize, dy: usize, dx: usize): void {
  const stride = (<usize>C) << 2;
  for (let r = 0; r < R; r++) {
    const yr = y + <usize>r * stride;
    const dr = dy + <usize>r * stride;
    const xr = dx + <usize>r * stride;
    let acc = f32x4.splat(0);
    let j = 0;
    for (; j + 4 <= C; j += 4) {
      const o = (<usize>j) << 2;
      acc = f32x4.add(acc, f32x4.mul(v128.load(yr + o), v128.load(dr + o)));
    }
    let dot = F32x4Math.hsum(acc);
    for (; j < C; j++) dot += load<f32>(yr + ((<usize>j) << 2)) * load<f32>(dr + ((<usize>j) << 2));
    const dv = f32x4.splat(dot);
    j = 0;
    for (; j + 4 <= C; j += 4) {
      const o = (<usize>j) << 2;
      v128.store(xr + o, f32x4.mul(v128.load(yr + o), f32x4.sub(v128.load(dr + o), dv)));
    }
    for (; j < C; j++) {
      const o = (<usize>j) << 2;
      store<f32>(xr + o, load<f32>(yr + o) * (load<f32>(dr + o) - dot));
    }
  }
}

export function softmax_fwd_f32_scalar(R: i32, C: i32, x: usize, y: usize): void {
  for (let r = 0; r < R; r++) {
    const base = <usize>r * <usize>C;
    let m: f64 = -Infinity;
    for (let j = 0; j < C; j++) m = max(m, <f64>load<f32>(x + ((base + <usize>j) << 2)));
    let s: f64 = 0;
    for (let j = 0; j < C; j++) s += Math.exp(<f64>load<f32>(x + ((base + <usize>j) << 2)) - m);
    for (let j = 0; j < C; j++) {
      const p = (base + <usize>j) << 2;
      store<f32>(y + p, <f32>(Math.exp(<f64>load<f32>(x + p) - m) / s));
    }
  }
}

export function softmax_bwd_f32_scalar(R: i32, C: i32, y: usize, dy: usize, dx: usize): void {
  for (let r = 0; r < R; r++) {
    const base = <usize>r * <usize>C;
    let dot: f64 = 0;
    for (let j = 0; j < C; j++) {
      const p = (base + <usize>j) << 2;
      dot += <f64>load<f32>(y + p) * <f64>load<f32>(dy + p);
    }
    for (let j = 0; j < C; j++) {
      const p = (base + <usize>j) << 2;
      store<f32>(dx + p, <f32>(<f64>load<f32>(y + p) * (<f64>load<f32>(dy + p) - dot)));
    }
  }
}
