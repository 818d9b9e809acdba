// Batch normalization over the last axis (TF.js/Keras BatchNormalization): x[R,C] with R = batch x
// spatial positions and C channels; per-channel vectors mean/var/invStd/gamma/beta are [C].
// gamma == 0 means scale off (gamma = 1); beta == 0 means center off (beta = 0).
//
// Memory order: every kernel walks x in blocks of rows small enough to stay in L1 (~16 KB), and
// inside a block 16 channels (a cache line of a row) at a time down the rows, then 4, then one,
// so per-channel values live in registers and x is streamed from memory once per pass. The
// training forward makes two passes over x (statistics, then y); the backward two (sums, then dx).

/**
 * Rows per block: ~16 KB of x, so a block read twice comes from L1 the second time; at least 16
 * rows so wide rows (C = 512) still amortize each walk's per-block work, at most 1024 (narrow
 * rows; keeps the f32 block sums short).
 */
function blockRows(C: i32): i32 {
  const nb = 4096 / C;
  return nb < 16 ? 16 : nb > 1024 ? 1024 : nb;
}

/**
 * Chan et al.'s merge of a block (n_b rows, shifted mean mb, M2 m2) into the running statistics
 * at mp/vp over the n_a = r0 rows before it: mean += delta*n_b/n; M2 += M2_b + delta^2*n_a*n_b/n
 * (wNew = n_b/n, wCross = n_a*n_b/n). The first block just stores.
 */
function mergeBlockStats(
  mp: usize,
  vp: usize,
  mb: v128,
  m2: v128,
  first: bool,
  wNew: f32,
  wCross: f32,
): void {
  if (first) {
    v128.store(mp, mb);
    v128.store(vp, m2);
    return;
  }
  const mean = v128.load(mp);
  const delta = f32x4.sub(mb, mean);
  v128.store(mp, f32x4.add(mean, f32x4.mul(delta, f32x4.splat(wNew))));
  const dd = f32x4.mul(f32x4.mul(delta, delta), f32x4.splat(wCross));
  v128.store(vp, f32x4.add(f32x4.add(v128.load(vp), m2), dd));
}

/**
 * The corrected two-pass M2 of a block from its sums about a center: sum d^2 - (sum d)^2/n,
 * which cancels to first order the rounding of the center (clamped at 0 against round-off).
 */
function correctedM2(q: v128, s: v128, n: v128): v128 {
  return f32x4.pmax(f32x4.sub(q, f32x4.div(f32x4.mul(s, s), n)), f32x4.splat(0));
}

/**
 * Statistics of one block for 16 channels (one cache line of a row) at byte offset o: the shifted
 * mean (about k = x's first row), then M2 about the center k + mean (the second read is from L1),
 * merged into batchMean/batchVar.
 */
function blockStats16(
  x: usize,
  col: usize,
  stride: usize,
  rows: i32,
  mp: usize,
  vp: usize,
  first: bool,
  wNew: f32,
  wCross: f32,
): void {
  const k0 = v128.load(x);
  const k1 = v128.load(x, 16);
  const k2 = v128.load(x, 32);
  const k3 = v128.load(x, 48);
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let p = col;
  for (let r = 0; r < rows; r++, p += stride) {
    a0 = f32x4.add(a0, f32x4.sub(v128.load(p), k0));
    a1 = f32x4.add(a1, f32x4.sub(v128.load(p, 16), k1));
    a2 = f32x4.add(a2, f32x4.sub(v128.load(p, 32), k2));
    a3 = f32x4.add(a3, f32x4.sub(v128.load(p, 48), k3));
  }
  const n = f32x4.splat(<f32>rows);
  const mb0 = f32x4.div(a0, n);
  const mb1 = f32x4.div(a1, n);
  const mb2 = f32x4.div(a2, n);
  const mb3 = f32x4.div(a3, n);
  const c0 = f32x4.add(k0, mb0);
  const c1 = f32x4.add(k1, mb1);
  const c2 = f32x4.add(k2, mb2);
  const c3 = f32x4.add(k3, mb3);
  let q0 = f32x4.splat(0);
  let q1 = f32x4.splat(0);
  let q2 = f32x4.splat(0);
  let q3 = f32x4.splat(0);
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let s2 = f32x4.splat(0);
  let s3 = f32x4.splat(0);
  p = col;
  for (let r = 0; r < rows; r++, p += stride) {
    const d0 = f32x4.sub(v128.load(p), c0);
    const d1 = f32x4.sub(v128.load(p, 16), c1);
    const d2 = f32x4.sub(v128.load(p, 32), c2);
    const d3 = f32x4.sub(v128.load(p, 48), c3);
    q0 = f32x4.add(q0, f32x4.mul(d0, d0));
    q1 = f32x4.add(q1, f32x4.mul(d1, d1));
    q2 = f32x4.add(q2, f32x4.mul(d2, d2));
    q3 = f32x4.add(q3, f32x4.mul(d3, d3));
    s0 = f32x4.add(s0, d0);
    s1 = f32x4.add(s1, d1);
    s2 = f32x4.add(s2, d2);
    s3 = f32x4.add(s3, d3);
  }
  mergeBlockStats(mp, vp, mb0, correctedM2(q0, s0, n), first, wNew, wCross);
  mergeBlockStats(mp + 16, vp + 16, mb1, correctedM2(q1, s1, n), first, wNew, wCross);
  mergeBlockStats(mp + 32, vp + 32, mb2, correctedM2(q2, s2, n), first, wNew, wCross);
  mergeBlockStats(mp + 48, vp + 48, mb3, correctedM2(q3, s3, n), first, wNew, wCross);
}

/** blockStats16 for 4 channels (two chains per sum to hide the add latency). */
function blockStats4(
  x: usize,
  col: usize,
  stride: usize,
  rows: i32,
  mp: usize,
  vp: usize,
  first: bool,
  wNew: f32,
  wCross: f32,
): void {
  const k = v128.load(x);
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let p = col;
  let r = 0;
  for (; r + 2 <= rows; r += 2, p += 2 * stride) {
    a0 = f32x4.add(a0, f32x4.sub(v128.load(p), k));
    a1 = f32x4.add(a1, f32x4.sub(v128.load(p + stride), k));
  }
  if (r < rows) a0 = f32x4.add(a0, f32x4.sub(v128.load(p), k));
  const n = f32x4.splat(<f32>rows);
  const mb = f32x4.div(f32x4.add(a0, a1), n);
  const c = f32x4.add(k, mb);
  let q0 = f32x4.splat(0);
  let q1 = f32x4.splat(0);
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  p = col;
  r = 0;
  for (; r + 2 <= rows; r += 2, p += 2 * stride) {
    const d0 = f32x4.sub(v128.load(p), c);
    const d1 = f32x4.sub(v128.load(p + stride), c);
    q0 = f32x4.add(q0, f32x4.mul(d0, d0));
    q1 = f32x4.add(q1, f32x4.mul(d1, d1));
    s0 = f32x4.add(s0, d0);
    s1 = f32x4.add(s1, d1);
  }
  if (r < rows) {
    const d0 = f32x4.sub(v128.load(p), c);
    q0 = f32x4.add(q0, f32x4.mul(d0, d0));
    s0 = f32x4.add(s0, d0);
  }
  const m2 = correctedM2(f32x4.add(q0, q1), f32x4.add(s0, s1), n);
  mergeBlockStats(mp, vp, mb, m2, first, wNew, wCross);
}

/** The same statistics for one channel (the C % 4 tail). */
function blockStats1(
  x: usize,
  col: usize,
  stride: usize,
  rows: i32,
  mp: usize,
  vp: usize,
  first: bool,
  wNew: f32,
  wCross: f32,
): void {
  const k = load<f32>(x);
  let a: f32 = 0;
  let p = col;
  for (let r = 0; r < rows; r++, p += stride) a += load<f32>(p) - k;
  const n = <f32>rows;
  const mb = a / n;
  const c = k + mb;
  let q: f32 = 0;
  let sd: f32 = 0;
  p = col;
  for (let r = 0; r < rows; r++, p += stride) {
    const d = load<f32>(p) - c;
    q += d * d;
    sd += d;
  }
  const m2 = max<f32>(q - (sd * sd) / n, 0);
  if (first) {
    store<f32>(mp, mb);
    store<f32>(vp, m2);
  } else {
    const mean = load<f32>(mp);
    const delta = mb - mean;
    store<f32>(mp, mean + delta * wNew);
    store<f32>(vp, load<f32>(vp) + m2 + delta * delta * wCross);
  }
}

/** Per-channel gamma (1 when absent) at byte offset o. */
function gammaAt(gamma: usize, o: usize): v128 {
  return gamma != 0 ? v128.load(gamma + o) : f32x4.splat(1);
}

/** Per-channel beta (0 when absent) at byte offset o. */
function betaAt(beta: usize, o: usize): v128 {
  return beta != 0 ? v128.load(beta + o) : f32x4.splat(0);
}

/**
 * y = (x - m)*a + b down one block for 16 channels, the per-channel m, a, b held in registers
 * (training: a = gamma*invStd; inference: a = gamma/sqrt(runVar + eps)).
 */
function affineBlock16(
  px: usize,
  py: usize,
  stride: usize,
  rows: i32,
  m0: v128,
  m1: v128,
  m2: v128,
  m3: v128,
  a0: v128,
  a1: v128,
  a2: v128,
  a3: v128,
  b0: v128,
  b1: v128,
  b2: v128,
  b3: v128,
): void {
  for (let r = 0; r < rows; r++, px += stride, py += stride) {
    v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px), m0), a0), b0));
    v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px, 16), m1), a1), b1), 16);
    v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px, 32), m2), a2), b2), 32);
    v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px, 48), m3), a3), b3), 48);
  }
}

/** y = (x - m)*a + b down one column of 4 channels. */
function affineBlock4(
  px: usize,
  py: usize,
  stride: usize,
  rows: i32,
  m: v128,
  a: v128,
  b: v128,
): void {
  for (let r = 0; r < rows; r++, px += stride, py += stride) {
    v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px), m), a), b));
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
 * the corrected sum of squared deviations about it (a second read, from L1); blocks are merged
 * with Chan et al.'s pairwise update. Until the end batchMean holds the shifted running mean and
 * batchVar the running M2 (sum of squared deviations). Channels go 16 at a time (a cache line of
 * a row per walk down the block), then 4, then one.
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

  for (let r0 = 0; r0 < R; r0 += nb) {
    const rows = min(nb, R - r0);
    const block = x + <usize>r0 * stride;
    const first = r0 == 0;
    const wNew = <f32>rows / <f32>(r0 + rows);
    const wCross = <f32>r0 * wNew;
    let c = 0;
    for (; c + 16 <= C; c += 16) {
      const o = (<usize>c) << 2;
      blockStats16(
        x + o,
        block + o,
        stride,
        rows,
        batchMean + o,
        batchVar + o,
        first,
        wNew,
        wCross,
      );
    }
    for (; c + 4 <= C; c += 4) {
      const o = (<usize>c) << 2;
      blockStats4(x + o, block + o, stride, rows, batchMean + o, batchVar + o, first, wNew, wCross);
    }
    for (; c < C; c++) {
      const o = (<usize>c) << 2;
      blockStats1(x + o, block + o, stride, rows, batchMean + o, batchVar + o, first, wNew, wCross);
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
    let c = 0;
    for (; c + 16 <= C; c += 16) {
      const o = (<usize>c) << 2;
      const m = batchMean + o;
      const s = batchInvStd + o;
      affineBlock16(
        bx + o,
        by + o,
        stride,
        rows,
        v128.load(m),
        v128.load(m, 16),
        v128.load(m, 32),
        v128.load(m, 48),
        f32x4.mul(gammaAt(gamma, o), v128.load(s)),
        f32x4.mul(gammaAt(gamma, o + 16), v128.load(s, 16)),
        f32x4.mul(gammaAt(gamma, o + 32), v128.load(s, 32)),
        f32x4.mul(gammaAt(gamma, o + 48), v128.load(s, 48)),
        betaAt(beta, o),
        betaAt(beta, o + 16),
        betaAt(beta, o + 32),
        betaAt(beta, o + 48),
      );
    }
    for (; c + 4 <= C; c += 4) {
      const o = (<usize>c) << 2;
      const a = f32x4.mul(gammaAt(gamma, o), v128.load(batchInvStd + o));
      affineBlock4(bx + o, by + o, stride, rows, v128.load(batchMean + o), a, betaAt(beta, o));
    }
    for (; c < C; c++) {
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
  const ev = f32x4.splat(eps);
  for (let r0 = 0; r0 < R; r0 += nb) {
    const rows = min(nb, R - r0);
    const bx = x + <usize>r0 * stride;
    const by = y + <usize>r0 * stride;
    let c = 0;
    for (; c + 16 <= C; c += 16) {
      const o = (<usize>c) << 2;
      const m = runMean + o;
      const v = runVar + o;
      affineBlock16(
        bx + o,
        by + o,
        stride,
        rows,
        v128.load(m),
        v128.load(m, 16),
        v128.load(m, 32),
        v128.load(m, 48),
        f32x4.div(gammaAt(gamma, o), f32x4.sqrt(f32x4.add(v128.load(v), ev))),
        f32x4.div(gammaAt(gamma, o + 16), f32x4.sqrt(f32x4.add(v128.load(v, 16), ev))),
        f32x4.div(gammaAt(gamma, o + 32), f32x4.sqrt(f32x4.add(v128.load(v, 32), ev))),
        f32x4.div(gammaAt(gamma, o + 48), f32x4.sqrt(f32x4.add(v128.load(v, 48), ev))),
        betaAt(beta, o),
        betaAt(beta, o + 16),
        betaAt(beta, o + 32),
        betaAt(beta, o + 48),
      );
    }
    for (; c + 4 <= C; c += 4) {
      const o = (<usize>c) << 2;
      const a = f32x4.div(gammaAt(gamma, o), f32x4.sqrt(f32x4.add(v128.load(runVar + o), ev)));
      affineBlock4(bx + o, by + o, stride, rows, v128.load(runMean + o), a, betaAt(beta, o));
    }
    for (; c < C; c++) {
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
 * Adds sum_r dy and sum_r dy*(x - mean) over one block, for 16 channels, into sp/tp (stores on
 * the first block): a blocked sum, so rounding grows with nb + R/nb rather than R.
 */
function gradSumsBlock16(
  px: usize,
  pd: usize,
  stride: usize,
  rows: i32,
  mp: usize,
  sp: usize,
  tp: usize,
  first: bool,
): void {
  const m0 = v128.load(mp);
  const m1 = v128.load(mp, 16);
  const m2 = v128.load(mp, 32);
  const m3 = v128.load(mp, 48);
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let s2 = f32x4.splat(0);
  let s3 = f32x4.splat(0);
  let t0 = f32x4.splat(0);
  let t1 = f32x4.splat(0);
  let t2 = f32x4.splat(0);
  let t3 = f32x4.splat(0);
  for (let r = 0; r < rows; r++, px += stride, pd += stride) {
    const d0 = v128.load(pd);
    const d1 = v128.load(pd, 16);
    const d2 = v128.load(pd, 32);
    const d3 = v128.load(pd, 48);
    s0 = f32x4.add(s0, d0);
    s1 = f32x4.add(s1, d1);
    s2 = f32x4.add(s2, d2);
    s3 = f32x4.add(s3, d3);
    t0 = f32x4.add(t0, f32x4.mul(d0, f32x4.sub(v128.load(px), m0)));
    t1 = f32x4.add(t1, f32x4.mul(d1, f32x4.sub(v128.load(px, 16), m1)));
    t2 = f32x4.add(t2, f32x4.mul(d2, f32x4.sub(v128.load(px, 32), m2)));
    t3 = f32x4.add(t3, f32x4.mul(d3, f32x4.sub(v128.load(px, 48), m3)));
  }
  if (!first) {
    s0 = f32x4.add(s0, v128.load(sp));
    s1 = f32x4.add(s1, v128.load(sp, 16));
    s2 = f32x4.add(s2, v128.load(sp, 32));
    s3 = f32x4.add(s3, v128.load(sp, 48));
    t0 = f32x4.add(t0, v128.load(tp));
    t1 = f32x4.add(t1, v128.load(tp, 16));
    t2 = f32x4.add(t2, v128.load(tp, 32));
    t3 = f32x4.add(t3, v128.load(tp, 48));
  }
  v128.store(sp, s0);
  v128.store(sp, s1, 16);
  v128.store(sp, s2, 32);
  v128.store(sp, s3, 48);
  v128.store(tp, t0);
  v128.store(tp, t1, 16);
  v128.store(tp, t2, 32);
  v128.store(tp, t3, 48);
}

/** gradSumsBlock16 for 4 channels (two chains per sum to hide the add latency). */
function gradSumsBlock4(
  px: usize,
  pd: usize,
  stride: usize,
  rows: i32,
  mp: usize,
  sp: usize,
  tp: usize,
  first: bool,
): void {
  const m = v128.load(mp);
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let t0 = f32x4.splat(0);
  let t1 = f32x4.splat(0);
  let r = 0;
  for (; r + 2 <= rows; r += 2, px += 2 * stride, pd += 2 * stride) {
    const d0 = v128.load(pd);
    const d1 = v128.load(pd + stride);
    s0 = f32x4.add(s0, d0);
    s1 = f32x4.add(s1, d1);
    t0 = f32x4.add(t0, f32x4.mul(d0, f32x4.sub(v128.load(px), m)));
    t1 = f32x4.add(t1, f32x4.mul(d1, f32x4.sub(v128.load(px + stride), m)));
  }
  if (r < rows) {
    const d0 = v128.load(pd);
    s0 = f32x4.add(s0, d0);
    t0 = f32x4.add(t0, f32x4.mul(d0, f32x4.sub(v128.load(px), m)));
  }
  let s = f32x4.add(s0, s1);
  let t = f32x4.add(t0, t1);
  if (!first) {
    s = f32x4.add(s, v128.load(sp));
    t = f32x4.add(t, v128.load(tp));
  }
  v128.store(sp, s);
  v128.store(tp, t);
}

/**
 * dx = a*(dy - dm - (x - m)*k) over one block, for 16 channels; dm and k are read from dmp/kp
 * (dx's own first two rows) before any of these columns is written.
 */
function gradDxBlock16(
  px: usize,
  pd: usize,
  pdx: usize,
  stride: usize,
  rows: i32,
  m0: v128,
  m1: v128,
  m2: v128,
  m3: v128,
  a0: v128,
  a1: v128,
  a2: v128,
  a3: v128,
  dmp: usize,
  kp: usize,
): void {
  const dm0 = v128.load(dmp);
  const dm1 = v128.load(dmp, 16);
  const dm2 = v128.load(dmp, 32);
  const dm3 = v128.load(dmp, 48);
  const k0 = v128.load(kp);
  const k1 = v128.load(kp, 16);
  const k2 = v128.load(kp, 32);
  const k3 = v128.load(kp, 48);
  for (let r = 0; r < rows; r++, px += stride, pd += stride, pdx += stride) {
    const x0 = f32x4.sub(v128.load(px), m0);
    const x1 = f32x4.sub(v128.load(px, 16), m1);
    const x2 = f32x4.sub(v128.load(px, 32), m2);
    const x3 = f32x4.sub(v128.load(px, 48), m3);
    const g0 = f32x4.sub(f32x4.sub(v128.load(pd), dm0), f32x4.mul(x0, k0));
    const g1 = f32x4.sub(f32x4.sub(v128.load(pd, 16), dm1), f32x4.mul(x1, k1));
    const g2 = f32x4.sub(f32x4.sub(v128.load(pd, 32), dm2), f32x4.mul(x2, k2));
    const g3 = f32x4.sub(f32x4.sub(v128.load(pd, 48), dm3), f32x4.mul(x3, k3));
    v128.store(pdx, f32x4.mul(a0, g0));
    v128.store(pdx, f32x4.mul(a1, g1), 16);
    v128.store(pdx, f32x4.mul(a2, g2), 32);
    v128.store(pdx, f32x4.mul(a3, g3), 48);
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
  const sumDy = dx; // dx row 0: sum_r dy, later mean_r dy
  const sumDyXc = dx + stride; // dx row 1: sum_r dy*(x-mean), later invStd^2 * that / R

  // Pass 1: per-channel sums, accumulated per block in registers.
  for (let r0 = 0; r0 < R; r0 += nb) {
    const rows = min(nb, R - r0);
    const bx = x + <usize>r0 * stride;
    const bdy = dy + <usize>r0 * stride;
    const first = r0 == 0;
    let c = 0;
    for (; c + 16 <= C; c += 16) {
      const o = (<usize>c) << 2;
      gradSumsBlock16(bx + o, bdy + o, stride, rows, batchMean + o, sumDy + o, sumDyXc + o, first);
    }
    for (; c + 4 <= C; c += 4) {
      const o = (<usize>c) << 2;
      gradSumsBlock4(bx + o, bdy + o, stride, rows, batchMean + o, sumDy + o, sumDyXc + o, first);
    }
    for (; c < C; c++) {
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
    let c = 0;
    for (; c + 16 <= C; c += 16) {
      const o = (<usize>c) << 2;
      const inv = batchInvStd + o;
      const m = batchMean + o;
      gradDxBlock16(
        bx + o,
        bdy + o,
        bdx + o,
        stride,
        rows,
        v128.load(m),
        v128.load(m, 16),
        v128.load(m, 32),
        v128.load(m, 48),
        f32x4.mul(gammaAt(gamma, o), v128.load(inv)),
        f32x4.mul(gammaAt(gamma, o + 16), v128.load(inv, 16)),
        f32x4.mul(gammaAt(gamma, o + 32), v128.load(inv, 32)),
        f32x4.mul(gammaAt(gamma, o + 48), v128.load(inv, 48)),
        sumDy + o,
        sumDyXc + o,
      );
    }
    for (; c + 4 <= C; c += 4) {
      const o = (<usize>c) << 2;
      const a = f32x4.mul(gammaAt(gamma, o), v128.load(batchInvStd + o));
      const m = v128.load(batchMean + o);
      const dm = v128.load(sumDy + o);
      const k = v128.load(sumDyXc + o);
      let px = bx + o;
      let pd = bdy + o;
      let pdx = bdx + o;
      for (let r = 0; r < rows; r++, px += stride, pd += stride, pdx += stride) {
        const xc = f32x4.sub(v128.load(px), m);
        v128.store(pdx, f32x4.mul(a, f32x4.sub(f32x4.sub(v128.load(pd), dm), f32x4.mul(xc, k))));
      }
    }
    for (; c < C; c++) {
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
