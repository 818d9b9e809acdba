// Optimizer steps over flat parameter/gradient/state buffers w[n], g[n], (v|m)[n], with Keras's
// update formulas. Hyper-parameters that depend on the step number (Adam's bias correction) are
// folded in by the host, so a kernel is one pass over memory.

/** w -= lr*g. */
export function sgd_f32(n: i32, w: usize, g: usize, lr: f32): void {
  const lv = f32x4.splat(lr);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(w + o, f32x4.sub(v128.load(w + o), f32x4.mul(lv, v128.load(g + o))));
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    store<f32>(w + o, load<f32>(w + o) - lr * load<f32>(g + o));
  }
}

export function sgd_f32_scalar(n: i32, w: usize, g: usize, lr: f32): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    store<f32>(w + o, load<f32>(w + o) - lr * load<f32>(g + o));
  }
}

/**
 * Keras SGD with momentum: v = momentum*v - lr*g; then w += v, or with nesterov != 0
 * w += momentum*v - lr*g (the look-ahead, using the updated v).
 */
export function sgd_momentum_f32(
  n: i32,
  w: usize,
  g: usize,
  v: usize,
  lr: f32,
  momentum: f32,
  nesterov: i32,
): void {
  const lv = f32x4.splat(lr);
  const mv = f32x4.splat(momentum);
  let i = 0;
  if (nesterov != 0) {
    for (; i + 4 <= n; i += 4) {
      const o = (<usize>i) << 2;
      const lg = f32x4.mul(lv, v128.load(g + o));
      const vel = f32x4.sub(f32x4.mul(mv, v128.load(v + o)), lg);
      v128.store(v + o, vel);
      v128.store(w + o, f32x4.add(v128.load(w + o), f32x4.sub(f32x4.mul(mv, vel), lg)));
    }
  } else {
    for (; i + 4 <= n; i += 4) {
      const o = (<usize>i) << 2;
      const vel = f32x4.sub(f32x4.mul(mv, v128.load(v + o)), f32x4.mul(lv, v128.load(g + o)));
      v128.store(v + o, vel);
      v128.store(w + o, f32x4.add(v128.load(w + o), vel));
    }
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    const lg = lr * load<f32>(g + o);
    const vel = momentum * load<f32>(v + o) - lg;
    store<f32>(v + o, vel);
    store<f32>(w + o, load<f32>(w + o) + (nesterov != 0 ? momentum * vel - lg : vel));
  }
}

export function sgd_momentum_f32_scalar(
  n: i32,
  w: usize,
  g: usize,
  v: usize,
  lr: f32,
  momentum: f32,
  nesterov: i32,
): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    const lg = lr * load<f32>(g + o);
    const vel = momentum * load<f32>(v + o) - lg;
    store<f32>(v + o, vel);
    store<f32>(w + o, load<f32>(w + o) + (nesterov != 0 ? momentum * vel - lg : vel));
  }
}

/**
 * Adam and AdamW (Keras 3). First w -= decay*w, the decoupled weight decay (the host passes
 * decay = lr*weightDecay for AdamW, 0 for Adam, which skips it so Adam stays bit-exact). Then
 * m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; w -= lrT*m/(sqrt(v) + eps), with the host's
 * bias-corrected lrT = lr*sqrt(1-b2^t)/(1-b1^t) ("epsilon hat" placement, as Keras).
 */
export function adam_f32(
  n: i32,
  w: usize,
  g: usize,
  m: usize,
  v: usize,
  lrT: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  decay: f32,
): void {
  const b1 = f32x4.splat(beta1);
  const c1 = f32x4.splat(<f32>1 - beta1);
  const b2 = f32x4.splat(beta2);
  const c2 = f32x4.splat(<f32>1 - beta2);
  const lv = f32x4.splat(lrT);
  const ev = f32x4.splat(eps);
  const dv = f32x4.splat(decay);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    const gi = v128.load(g + o);
    const mi = f32x4.add(f32x4.mul(b1, v128.load(m + o)), f32x4.mul(c1, gi));
    const vi = f32x4.add(f32x4.mul(b2, v128.load(v + o)), f32x4.mul(c2, f32x4.mul(gi, gi)));
    v128.store(m + o, mi);
    v128.store(v + o, vi);
    let wi = v128.load(w + o);
    if (decay != 0) wi = f32x4.sub(wi, f32x4.mul(dv, wi));
    const step = f32x4.div(f32x4.mul(lv, mi), f32x4.add(f32x4.sqrt(vi), ev));
    v128.store(w + o, f32x4.sub(wi, step));
  }
  for (; i < n; i++) adamOne(w, g, m, v, (<usize>i) << 2, lrT, beta1, beta2, eps, decay);
}

function adamOne(
  w: usize,
  g: usize,
  m: usize,
  v: usize,
  o: usize,
  lrT: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  decay: f32,
): void {
  const gi = load<f32>(g + o);
  const mi = beta1 * load<f32>(m + o) + (<f32>1 - beta1) * gi;
  const vi = beta2 * load<f32>(v + o) + (<f32>1 - beta2) * (gi * gi);
  store<f32>(m + o, mi);
  store<f32>(v + o, vi);
  let wi = load<f32>(w + o);
  if (decay != 0) wi = wi - decay * wi;
  store<f32>(w + o, wi - (lrT * mi) / (Mathf.sqrt(vi) + eps));
}

export function adam_f32_scalar(
  n: i32,
  w: usize,
  g: usize,
  m: usize,
  v: usize,
  lrT: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  decay: f32,
): void {
  for (let i = 0; i < n; i++) adamOne(w, g, m, v, (<usize>i) << 2, lrT, beta1, beta2, eps, decay);
}
