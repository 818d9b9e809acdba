// Batch normalization over the last axis (TF.js/Keras BatchNormalization): x[R,C] with R = batch x
// spatial positions and C channels; per-channel vectors mean/var/invStd/gamma/beta are [C].
// gamma == 0 means scale off (gamma = 1); beta == 0 means center off (beta = 0).
//
// Memory order: every kernel walks x in blocks of rows small enough to stay in L1 (~16 KB), and
// inside a block one channel vector (4 channels) at a time down the rows, so per-channel values
// live in registers and x is streamed from memory once per pass. The training forward makes two
// passes over x (statistics, then y); the backward two (sums, then dx).

/**
 * Rows per block: ~16 KB of x, so a block read twice comes from L1 the second time; at least 8
 * rows (wide rows, e.g. C = 512, have power-of-two strides that thrash L1 sets when a column
 * walks many of them), at most 1024 (narrow rows; keeps the f32 block sums short).
 */
function blockRows(C: i32): i32 {
  const nb = 4096 / C;
  return nb < 8 ? 8 : nb > 1024 ? 1024 : nb;
}

/**
 * Sum of (x - k) down a column of 4-channel vectors: `rows` rows, `stride` bytes apart. Four
 * chains hide the add latency.
 */
function columnSumShifted(p: usize, stride: usize, rows: i32, k: v128): v128 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    a0 = f32x4.add(a0, f32x4.sub(v128.load(p), k));
    a1 = f32x4.add(a1, f32x4.sub(v128.load(p + stride), k));
    a2 = f32x4.add(a2, f32x4.sub(v128.load(p + 2 * stride), k));
    a3 = f32x4.add(a3, f32x4.sub(v128.load(p + 3 * stride), k));
    p += 4 * stride;
  }
  for (; r < rows; r++) {
    a0 = f32x4.add(a0, f32x4.sub(v128.load(p), k));
    p += stride;
  }
  return f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
}

/**
 * M2 = sum d^2 - (sum d)^2 / rows with d = (x - k) - m, down a column (the second read of a
 * block, from L1): the "corrected two-pass" formula, which cancels to first order the rounding
 * error of the block mean m (taken relative to the shift k).
 */
function columnM2(p: usize, stride: usize, rows: i32, k: v128, m: v128): v128 {
  let q0 = f32x4.splat(0);
  let q1 = f32x4.splat(0);
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let r = 0;
  for (; r + 2 <= rows; r += 2) {
    const d0 = f32x4.sub(f32x4.sub(v128.load(p), k), m);
    const d1 = f32x4.sub(f32x4.sub(v128.load(p + stride), k), m);
    q0 = f32x4.add(q0, f32x4.mul(d0, d0));
    q1 = f32x4.add(q1, f32x4.mul(d1, d1));
    s0 = f32x4.add(s0, d0);
    s1 = f32x4.add(s1, d1);
    p += 2 * stride;
  }
  if (r < rows) {
    const d0 = f32x4.sub(f32x4.sub(v128.load(p), k), m);
    q0 = f32x4.add(q0, f32x4.mul(d0, d0));
    s0 = f32x4.add(s0, d0);
  }
  const s = f32x4.add(s0, s1);
  const m2 = f32x4.sub(f32x4.add(q0, q1), f32x4.div(f32x4.mul(s, s), f32x4.splat(<f32>rows)));
  return f32x4.pmax(m2, f32x4.splat(0));
}

/** y = (x - m)*a + b down a column of `rows` rows. */
function columnAffine(
  px: usize,
  py: usize,
  stride: usize,
  rows: i32,
  m: v128,
  a: v128,
  b: v128,
): void {
  for (let r = 0; r < rows; r++) {
    v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px), m), a), b));
    px += stride;
    py += stride;
  }
}

/**
 * Training forward. x[R,C] -> y[R,C] = gamma*(x-mean)*invStd + beta with the batch mean and the
 * biased batch variance (as tf.moments); writes batchMean[C], batchVar[C], batchInvStd[C] =
 * 1/sqrt(var+eps) for the backward and the running update. y may alias x.
 *
 * Statistics work on x - k, k = x's first row: the terms then scale with the spread rather than
 * the mean, so a channel with |mean| >> std keeps its variance (sum(x^2)/R - mean^2 in f32 would
 * cancel it away) and its mean is rounded once, at the end. Within a block of rows: the mean, then
 * the corrected sum of squared deviations from it (a second read, from L1); blocks are merged
 * with Chan et al.'s pairwise update. Until the end batchMean holds the shifted running mean and
 * batchVar the running M2 (sum of squared deviations).
 */
export function batchnorm_train_fwd_f32(
  R: i32,
  C: i32,
  x: usize,
  gamma: usize,
  beta: usize,
  eps: f32,
  y: usize,
  batchMean: usize,
  batchVar: usize,
  batchInvStd: usize,
): void {
  if (C <= 0) return;
  if (R <= 0) {
    for (let c = 0; c < C; c++) {
      const o = (<usize>c) << 2;
      store<f32>(batchMean + o, 0);
      store<f32>(batchVar + o, 0);
      store<f32>(batchInvStd + o, <f32>1 / Mathf.sqrt(eps));
    }
    return;
  }
  const stride = (<usize>C) << 2;
  const nb = blockRows(C);
  const C4 = C & ~3;

  for (let r0 = 0; r0 < R; r0 += nb) {
    const rows = min(nb, R - r0);
    const block = x + <usize>r0 * stride;
    const fRows = <f32>rows;
    // Chan merge of (n_a = r0, mean_a, M2_a) with the block (n_b = rows, mean_b, M2_b):
    // mean += delta*n_b/n; M2 += M2_b + delta^2*n_a*n_b/n.
    const wNew = fRows / <f32>(r0 + rows);
    const wCross = <f32>r0 * wNew;
    for (let c = 0; c < C4; c += 4) {
      const o = (<usize>c) << 2;
      const col = block + o;
      const k = v128.load(x + o);
      const mb = f32x4.div(columnSumShifted(col, stride, rows, k), f32x4.splat(fRows));
      const m2 = columnM2(col, stride, rows, k, mb);
      if (r0 == 0) {
        v128.store(batchMean + o, mb);
        v128.store(batchVar + o, m2);
      } else {
        const mean = v128.load(batchMean + o);
        const delta = f32x4.sub(mb, mean);
        v128.store(batchMean + o, f32x4.add(mean, f32x4.mul(delta, f32x4.splat(wNew))));
        const dd = f32x4.mul(f32x4.mul(delta, delta), f32x4.splat(wCross));
        v128.store(batchVar + o, f32x4.add(f32x4.add(v128.load(batchVar + o), m2), dd));
      }
    }
    for (let c = C4; c < C; c++) {
      const o = (<usize>c) << 2;
      const k = load<f32>(x + o);
      let s: f32 = 0;
      let p = block + o;
      for (let r = 0; r < rows; r++, p += stride) s += load<f32>(p) - k;
      const mb = s / fRows;
      let q: f32 = 0;
      let sd: f32 = 0;
      p = block + o;
      for (let r = 0; r < rows; r++, p += stride) {
        const d = load<f32>(p) - k - mb;
        q += d * d;
        sd += d;
      }
      const m2 = max<f32>(q - (sd * sd) / fRows, 0);
      if (r0 == 0) {
        store<f32>(batchMean + o, mb);
        store<f32>(batchVar + o, m2);
      } else {
        const mean = load<f32>(batchMean + o);
        const delta = mb - mean;
        store<f32>(batchMean + o, mean + delta * wNew);
        store<f32>(batchVar + o, load<f32>(batchVar + o) + m2 + delta * delta * wCross);
      }
    }
  }

  // Shifted mean -> mean (one rounding), M2 -> biased variance, and invStd. x's first row is
  // still intact here even when y aliases x.
  const fR = <f32>R;
  for (let c = 0; c < C; c++) {
    const o = (<usize>c) << 2;
    store<f32>(batchMean + o, load<f32>(x + o) + load<f32>(batchMean + o));
    const v = load<f32>(batchVar + o) / fR;
    store<f32>(batchVar + o, v);
    store<f32>(batchInvStd + o, <f32>1 / Mathf.sqrt(v + eps));
  }

  for (let r0 = 0; r0 < R; r0 += nb) {
    const rows = min(nb, R - r0);
    const bx = x + <usize>r0 * stride;
    const by = y + <usize>r0 * stride;
    for (let c = 0; c < C4; c += 4) {
      const o = (<usize>c) << 2;
      const g = gamma != 0 ? v128.load(gamma + o) : f32x4.splat(1);
      const b = beta != 0 ? v128.load(beta + o) : f32x4.splat(0);
      const a = f32x4.mul(g, v128.load(batchInvStd + o));
      columnAffine(bx + o, by + o, stride, rows, v128.load(batchMean + o), a, b);
    }
    for (let c = C4; c < C; c++) {
      const o = (<usize>c) << 2;
      const g: f32 = gamma != 0 ? load<f32>(gamma + o) : 1;
      const b: f32 = beta != 0 ? load<f32>(beta + o) : 0;
      const a = g * load<f32>(batchInvStd + o);
      const m = load<f32>(batchMean + o);
      for (let r = 0; r < rows; r++) {
        const q = <usize>r * stride + o;
        store<f32>(by + q, (load<f32>(bx + q) - m) * a + b);
      }
    }
  }
}

/** Plain float64 two-pass statistics: the oracle for batchnorm_train_fwd_f32. */
export function batchnorm_train_fwd_f32_scalar(
  R: i32,
  C: i32,
  x: usize,
  gamma: usize,
  beta: usize,
  eps: f32,
  y: usize,
  batchMean: usize,
  batchVar: usize,
  batchInvStd: usize,
): void {
  for (let c = 0; c < C; c++) {
    const o = (<usize>c) << 2;
    let s: f64 = 0;
    for (let r = 0; r < R; r++) s += <f64>load<f32>(x + <usize>(r * C + c) * 4);
    const mean = R > 0 ? s / <f64>R : 0;
    let ss: f64 = 0;
    for (let r = 0; r < R; r++) {
      const d = <f64>load<f32>(x + <usize>(r * C + c) * 4) - mean;
      ss += d * d;
    }
    const v = R > 0 ? ss / <f64>R : 0;
    const invStd = 1 / Math.sqrt(v + <f64>eps);
    store<f32>(batchMean + o, <f32>mean);
    store<f32>(batchVar + o, <f32>v);
    store<f32>(batchInvStd + o, <f32>invStd);
    const g: f64 = gamma != 0 ? <f64>load<f32>(gamma + o) : 1;
    const b: f64 = beta != 0 ? <f64>load<f32>(beta + o) : 0;
    for (let r = 0; r < R; r++) {
      const p = <usize>(r * C + c) * 4;
      store<f32>(y + p, <f32>(g * (<f64>load<f32>(x + p) - mean) * invStd + b));
    }
  }
}

/**
 * moving = moving*momentum + batch*(1-momentum) for the mean and the biased variance, as
 * tfjs-layers does after a training call (it feeds tf.moments' variance, without Bessel's factor).
 */
export function batchnorm_update_running_f32(
  C: i32,
  runMean: usize,
  runVar: usize,
  batchMean: usize,
  batchVar: usize,
  momentum: f32,
): void {
  const mv = f32x4.splat(momentum);
  const nv = f32x4.splat(<f32>1 - momentum);
  let c = 0;
  for (; c + 4 <= C; c += 4) {
    const o = (<usize>c) << 2;
    v128.store(
      runMean + o,
      f32x4.add(f32x4.mul(v128.load(runMean + o), mv), f32x4.mul(v128.load(batchMean + o), nv)),
    );
    v128.store(
      runVar + o,
      f32x4.add(f32x4.mul(v128.load(runVar + o), mv), f32x4.mul(v128.load(batchVar + o), nv)),
    );
  }
  const n: f32 = <f32>1 - momentum;
  for (; c < C; c++) {
    const o = (<usize>c) << 2;
    store<f32>(runMean + o, load<f32>(runMean + o) * momentum + load<f32>(batchMean + o) * n);
    store<f32>(runVar + o, load<f32>(runVar + o) * momentum + load<f32>(batchVar + o) * n);
  }
}

export function batchnorm_update_running_f32_scalar(
  C: i32,
  runMean: usize,
  runVar: usize,
  batchMean: usize,
  batchVar: usize,
  momentum: f32,
): void {
  const n: f32 = <f32>1 - momentum;
  for (let c = 0; c < C; c++) {
    const o = (<usize>c) << 2;
    store<f32>(runMean + o, load<f32>(runMean + o) * momentum + load<f32>(batchMean + o) * n);
    store<f32>(runVar + o, load<f32>(runVar + o) * momentum + load<f32>(batchVar + o) * n);
  }
}

/** Inference: y[R,C] = gamma*(x-runMean)/sqrt(runVar+eps) + beta (tf.batchNorm). y may alias x. */
export function batchnorm_infer_fwd_f32(
  R: i32,
  C: i32,
  x: usize,
  gamma: usize,
  beta: usize,
  runMean: usize,
  runVar: usize,
  eps: f32,
  y: usize,
): void {
  if (C <= 0) return;
  const stride = (<usize>C) << 2;
  const nb = blockRows(C);
  const C4 = C & ~3;
  const ev = f32x4.splat(eps);
  for (let r0 = 0; r0 < R; r0 += nb) {
    const rows = min(nb, R - r0);
    const bx = x + <usize>r0 * stride;
    const by = y + <usize>r0 * stride;
    for (let c = 0; c < C4; c += 4) {
      const o = (<usize>c) << 2;
      const g = gamma != 0 ? v128.load(gamma + o) : f32x4.splat(1);
      const b = beta != 0 ? v128.load(beta + o) : f32x4.splat(0);
      const a = f32x4.div(g, f32x4.sqrt(f32x4.add(v128.load(runVar + o), ev)));
      columnAffine(bx + o, by + o, stride, rows, v128.load(runMean + o), a, b);
    }
    for (let c = C4; c < C; c++) {
      const o = (<usize>c) << 2;
      const g: f32 = gamma != 0 ? load<f32>(gamma + o) : 1;
      const b: f32 = beta != 0 ? load<f32>(beta + o) : 0;
      const a = g / Mathf.sqrt(load<f32>(runVar + o) + eps);
      const m = load<f32>(runMean + o);
      for (let r = 0; r < rows; r++) {
        const q = <usize>r * stride + o;
        store<f32>(by + q, (load<f32>(bx + q) - m) * a + b);
      }
    }
  }
}

export function batchnorm_infer_fwd_f32_scalar(
  R: i32,
  C: i32,
  x: usize,
  gamma: usize,
  beta: usize,
  runMean: usize,
  runVar: usize,
  eps: f32,
  y: usize,
): void {
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      const o = (<usize>c) << 2;
      const p = <usize>(r * C + c) * 4;
      const g: f64 = gamma != 0 ? <f64>load<f32>(gamma + o) : 1;
      const b: f64 = beta != 0 ? <f64>load<f32>(beta + o) : 0;
      const m = <f64>load<f32>(runMean + o);
      const v = <f64>load<f32>(runVar + o);
      store<f32>(y + p, <f32>(((<f64>load<f32>(x + p) - m) * g) / Math.sqrt(v + <f64>eps) + b));
    }
  }
}

/**
 * Backward of the training forward, from x and the saved batchMean/batchInvStd:
 *   dbeta = sum_r dy,  dgamma = sum_r dy*xhat,  xhat = (x-mean)*invStd,
 *   dx = gamma*invStd/R * (R*dy - sum_r dy - xhat*sum_r dy*xhat).
 * dx is overwritten; dgamma/dbeta are overwritten, or skipped when 0. dx must not alias x or dy:
 * between the two passes dx's first two rows hold the per-channel sums (no scratch is needed
 * when dgamma/dbeta are absent), and the block holding them is rewritten last.
 */
export function batchnorm_bwd_f32(
  R: i32,
  C: i32,
  x: usize,
  dy: usize,
  gamma: usize,
  batchMean: usize,
  batchInvStd: usize,
  dx: usize,
  dgamma: usize,
  dbeta: usize,
): void {
  if (C <= 0) return;
  if (R < 2) {
    // One row (or none): too few rows for the scratch; the sums are the row itself.
    for (let c = 0; c < C; c++) {
      const o = (<usize>c) << 2;
      const inv = load<f32>(batchInvStd + o);
      const g: f32 = gamma != 0 ? load<f32>(gamma + o) : 1;
      const d: f32 = R == 1 ? load<f32>(dy + o) : 0;
      const xc: f32 = R == 1 ? load<f32>(x + o) - load<f32>(batchMean + o) : 0;
      if (dbeta != 0) store<f32>(dbeta + o, d);
      if (dgamma != 0) store<f32>(dgamma + o, d * xc * inv);
      if (R == 1) store<f32>(dx + o, g * inv * (d - d - xc * (inv * inv * d * xc)));
    }
    return;
  }
  const stride = (<usize>C) << 2;
  const nb = blockRows(C);
  const C4 = C & ~3;
  const sumDy = dx; // dx row 0: sum_r dy, later mean_r dy
  const sumDyXc = dx + stride; // dx row 1: sum_r dy*(x-mean), later invStd^2 * that / R

  // Pass 1: per-channel sums, accumulated per block in registers (a blocked sum, so the rounding
  // error grows with R/nb + nb rather than R).
  for (let r0 = 0; r0 < R; r0 += nb) {
    const rows = min(nb, R - r0);
    const bx = x + <usize>r0 * stride;
    const bdy = dy + <usize>r0 * stride;
    for (let c = 0; c < C4; c += 4) {
      const o = (<usize>c) << 2;
      const m = v128.load(batchMean + o);
      let s0 = f32x4.splat(0);
      let s1 = f32x4.splat(0);
      let t0 = f32x4.splat(0);
      let t1 = f32x4.splat(0);
      let px = bx + o;
      let pd = bdy + o;
      let r = 0;
      for (; r + 2 <= rows; r += 2) {
        const d0 = v128.load(pd);
        const d1 = v128.load(pd + stride);
        s0 = f32x4.add(s0, d0);
        s1 = f32x4.add(s1, d1);
        t0 = f32x4.add(t0, f32x4.mul(d0, f32x4.sub(v128.load(px), m)));
        t1 = f32x4.add(t1, f32x4.mul(d1, f32x4.sub(v128.load(px + stride), m)));
        px += 2 * stride;
        pd += 2 * stride;
      }
      if (r < rows) {
        const d0 = v128.load(pd);
        s0 = f32x4.add(s0, d0);
        t0 = f32x4.add(t0, f32x4.mul(d0, f32x4.sub(v128.load(px), m)));
      }
      let s = f32x4.add(s0, s1);
      let t = f32x4.add(t0, t1);
      if (r0 != 0) {
        s = f32x4.add(s, v128.load(sumDy + o));
        t = f32x4.add(t, v128.load(sumDyXc + o));
      }
      v128.store(sumDy + o, s);
      v128.store(sumDyXc + o, t);
    }
    for (let c = C4; c < C; c++) {
      const o = (<usize>c) << 2;
      const m = load<f32>(batchMean + o);
      let s: f32 = 0;
      let t: f32 = 0;
      for (let r = 0; r < rows; r++) {
        const q = <usize>r * stride + o;
        const d = load<f32>(bdy + q);
        s += d;
        t += d * (load<f32>(bx + q) - m);
      }
      if (r0 != 0) {
        s += load<f32>(sumDy + o);
        t += load<f32>(sumDyXc + o);
      }
      store<f32>(sumDy + o, s);
      store<f32>(sumDyXc + o, t);
    }
  }

  // Parameter gradients, then the two per-channel coefficients pass 2 needs, in place.
  const invR: f32 = <f32>1 / <f32>R;
  for (let c = 0; c < C; c++) {
    const o = (<usize>c) << 2;
    const inv = load<f32>(batchInvStd + o);
    const s = load<f32>(sumDy + o);
    const t = load<f32>(sumDyXc + o);
    if (dbeta != 0) store<f32>(dbeta + o, s);
    if (dgamma != 0) store<f32>(dgamma + o, t * inv);
    store<f32>(sumDy + o, s * invR);
    store<f32>(sumDyXc + o, t * inv * inv * invR);
  }

  // Pass 2: dx = gamma*invStd*(dy - mean(dy) - (x-mean)*k), k = invStd^2*sum(dy*(x-mean))/R.
  // Blocks run last to first: block 0 holds the coefficients, and each channel vector's pair is
  // loaded into registers before that column of block 0 is overwritten.
  const lastBlock = ((R - 1) / nb) * nb;
  for (let r0 = lastBlock; r0 >= 0; r0 -= nb) {
    const rows = min(nb, R - r0);
    const bx = x + <usize>r0 * stride;
    const bdy = dy + <usize>r0 * stride;
    const bdx = dx + <usize>r0 * stride;
    for (let c = 0; c < C4; c += 4) {
      const o = (<usize>c) << 2;
      const m = v128.load(batchMean + o);
      const inv = v128.load(batchInvStd + o);
      const a = gamma != 0 ? f32x4.mul(v128.load(gamma + o), inv) : inv;
      const dm = v128.load(sumDy + o);
      const k = v128.load(sumDyXc + o);
      let px = bx + o;
      let pd = bdy + o;
      let pdx = bdx + o;
      for (let r = 0; r < rows; r++) {
        const xc = f32x4.sub(v128.load(px), m);
        const inner = f32x4.sub(f32x4.sub(v128.load(pd), dm), f32x4.mul(xc, k));
        v128.store(pdx, f32x4.mul(a, inner));
        px += stride;
        pd += stride;
        pdx += stride;
      }
    }
    for (let c = C4; c < C; c++) {
      const o = (<usize>c) << 2;
      const m = load<f32>(batchMean + o);
      const inv = load<f32>(batchInvStd + o);
      const a = gamma != 0 ? load<f32>(gamma + o) * inv : inv;
      const dm = load<f32>(sumDy + o);
      const k = load<f32>(sumDyXc + o);
      for (let r = 0; r < rows; r++) {
        const q = <usize>r * stride + o;
        store<f32>(bdx + q, a * (load<f32>(bdy + q) - dm - (load<f32>(bx + q) - m) * k));
      }
    }
  }
}

/** Plain float64 oracle for batchnorm_bwd_f32 (straight from the formula). */
export function batchnorm_bwd_f32_scalar(
  R: i32,
  C: i32,
  x: usize,
  dy: usize,
  gamma: usize,
  batchMean: usize,
  batchInvStd: usize,
  dx: usize,
  dgamma: usize,
  dbeta: usize,
): void {
  for (let c = 0; c < C; c++) {
    const o = (<usize>c) << 2;
    const m = <f64>load<f32>(batchMean + o);
    const inv = <f64>load<f32>(batchInvStd + o);
    const g: f64 = gamma != 0 ? <f64>load<f32>(gamma + o) : 1;
    let sdy: f64 = 0;
    let sdyxh: f64 = 0;
    for (let r = 0; r < R; r++) {
      const p = <usize>(r * C + c) * 4;
      const d = <f64>load<f32>(dy + p);
      sdy += d;
      sdyxh += d * (<f64>load<f32>(x + p) - m) * inv;
    }
    if (dbeta != 0) store<f32>(dbeta + o, <f32>sdy);
    if (dgamma != 0) store<f32>(dgamma + o, <f32>sdyxh);
    for (let r = 0; r < R; r++) {
      const p = <usize>(r * C + c) * 4;
      const xh = (<f64>load<f32>(x + p) - m) * inv;
      const d = <f64>load<f32>(dy + p);
      store<f32>(dx + p, <f32>(((g * inv) / <f64>R) * (<f64>R * d - sdy - xh * sdyxh)));
    }
  }
}
