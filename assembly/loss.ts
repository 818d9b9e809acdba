// Losses with their gradients fused in: softmax + cross-entropy on logits[B,C] (what Keras does
// for from_logits=true, and what a softmax output layer followed by categorical cross-entropy
// should become), mean squared error, and accuracy counts. Each returns the mean loss over the
// batch as f64 (the per-row terms are summed in f64); dlogits/dpred = d(mean loss)/d(input) are
// skipped when the pointer is 0 (evaluation). probs and dlogits must not alias logits or each
// other (the loss reads logits after probs are written; dlogits is formed from probs).
import { F32x4Math, rowDivide_f32, rowExpShift_f32, rowMax_f32 } from "./f32x4_math";

/**
 * Sparse labels[B] (i32). probs[B,C] = softmax(logits); the row loss, logsumexp - logit[label],
 * is computed as (max - logit[label]) + log(sum exp(logit - max)), never as -log(prob): finite
 * for any finite logits and exact when a probability rounds to 0. dlogits = (probs - onehot)/B.
 * A label outside [0, C) makes the loss NaN and leaves that row's dlogits = probs/B (no write
 * outside the row).
 */
export function softmax_xent_sparse_f32(
  B: i32,
  C: i32,
  logits: usize,
  labels: usize,
  probs: usize,
  dlogits: usize,
): f64 {
  if (B <= 0) return 0;
  const stride = (<usize>C) << 2;
  const invB: f32 = <f32>1 / <f32>B;
  const iv = f32x4.splat(invB);
  let total: f64 = 0;
  for (let r = 0; r < B; r++) {
    const lr = logits + <usize>r * stride;
    const pr = probs + <usize>r * stride;
    const m = rowMax_f32(C, lr);
    const s = rowExpShift_f32(C, lr, m, pr);
    rowDivide_f32(C, pr, s);
    const label = load<i32>(labels + ((<usize>r) << 2));
    const valid = label >= 0 && label < C;
    total += valid ? <f64>m - <f64>load<f32>(lr + ((<usize>label) << 2)) + Math.log(<f64>s) : NaN;
    if (dlogits != 0) {
      const dr = dlogits + <usize>r * stride;
      let j = 0;
      for (; j + 4 <= C; j += 4) {
        const o = (<usize>j) << 2;
        v128.store(dr + o, f32x4.mul(v128.load(pr + o), iv));
      }
      for (; j < C; j++)
        store<f32>(dr + ((<usize>j) << 2), load<f32>(pr + ((<usize>j) << 2)) * invB);
      if (valid) {
        // p - 1 = -(sum of the other probabilities): p - 1 in f32 would cancel to a few correct
        // digits once the model is confident (p near 1), exactly when the gradient is small.
        let rest: f32 = 0;
        for (let j = 0; j < C; j++) if (j != label) rest += load<f32>(pr + ((<usize>j) << 2));
        store<f32>(dr + ((<usize>label) << 2), -rest * invB);
      }
    }
  }
  return total / <f64>B;
}

export function softmax_xent_sparse_f32_scalar(
  B: i32,
  C: i32,
  logits: usize,
  labels: usize,
  probs: usize,
  dlogits: usize,
): f64 {
  if (B <= 0) return 0;
  let total: f64 = 0;
  for (let r = 0; r < B; r++) {
    const base = <usize>r * <usize>C;
    let m: f64 = -Infinity;
    for (let j = 0; j < C; j++) {
      const v = <f64>load<f32>(logits + ((base + <usize>j) << 2));
      if (v > m) m = v;
    }
    let s: f64 = 0;
    for (let j = 0; j < C; j++)
      s += Math.exp(<f64>load<f32>(logits + ((base + <usize>j) << 2)) - m);
    const label = load<i32>(labels + ((<usize>r) << 2));
    const valid = label >= 0 && label < C;
    total += valid ? m + Math.log(s) - <f64>load<f32>(logits + ((base + <usize>label) << 2)) : NaN;
    for (let j = 0; j < C; j++) {
      const p = (base + <usize>j) << 2;
      const prob = Math.exp(<f64>load<f32>(logits + p) - m) / s;
      store<f32>(probs + p, <f32>prob);
      if (dlogits != 0) {
        store<f32>(dlogits + p, <f32>((prob - (j == label ? 1 : 0)) / <f64>B));
      }
    }
  }
  return total / <f64>B;
}

/**
 * Dense targets[B,C] (one-hot or soft). loss_r = sum_j t_j*((max - logit_j) + log(sum exp)),
 * i.e. -sum t*log_softmax, each term formed from differences (in f64) so large logits neither
 * cancel nor overflow.
 * dlogits = (probs - targets)/B (exact gradient when each target row sums to 1, as Keras assumes).
 */
export function softmax_xent_dense_f32(
  B: i32,
  C: i32,
  logits: usize,
  targets: usize,
  probs: usize,
  dlogits: usize,
): f64 {
  if (B <= 0) return 0;
  const stride = (<usize>C) << 2;
  const invB: f32 = <f32>1 / <f32>B;
  const iv = f32x4.splat(invB);
  let total: f64 = 0;
  for (let r = 0; r < B; r++) {
    const lr = logits + <usize>r * stride;
    const pr = probs + <usize>r * stride;
    const tr = targets + <usize>r * stride;
    const m = rowMax_f32(C, lr);
    const s = rowExpShift_f32(C, lr, m, pr);
    rowDivide_f32(C, pr, s);
    // Row loss in f64: (max - logit) can exceed the f32 range for logits near +-3e38.
    const logS = Math.log(<f64>s);
    let row: f64 = 0;
    for (let j = 0; j < C; j++) {
      const o = (<usize>j) << 2;
      row += <f64>load<f32>(tr + o) * (<f64>m - <f64>load<f32>(lr + o) + logS);
    }
    total += row;
    if (dlogits != 0) {
      const dr = dlogits + <usize>r * stride;
      let j = 0;
      for (; j + 4 <= C; j += 4) {
        const o = (<usize>j) << 2;
        v128.store(dr + o, f32x4.mul(f32x4.sub(v128.load(pr + o), v128.load(tr + o)), iv));
      }
      for (; j < C; j++) {
        const o = (<usize>j) << 2;
        store<f32>(dr + o, (load<f32>(pr + o) - load<f32>(tr + o)) * invB);
      }
    }
  }
  return total / <f64>B;
}

export function softmax_xent_dense_f32_scalar(
  B: i32,
  C: i32,
  logits: usize,
  targets: usize,
  probs: usize,
  dlogits: usize,
): f64 {
  if (B <= 0) return 0;
  let total: f64 = 0;
  for (let r = 0; r < B; r++) {
    const base = <usize>r * <usize>C;
    let m: f64 = -Infinity;
    for (let j = 0; j < C; j++) {
      const v = <f64>load<f32>(logits + ((base + <usize>j) << 2));
      if (v > m) m = v;
    }
    let s: f64 = 0;
    for (let j = 0; j < C; j++)
      s += Math.exp(<f64>load<f32>(logits + ((base + <usize>j) << 2)) - m);
    const lse = m + Math.log(s);
    for (let j = 0; j < C; j++) {
      const p = (base + <usize>j) << 2;
      const t = <f64>load<f32>(targets + p);
      const x = <f64>load<f32>(logits + p);
      total += t * (lse - x);
      const prob = Math.exp(x - m) / s;
      store<f32>(probs + p, <f32>prob);
      if (dlogits != 0) store<f32>(dlogits + p, <f32>((prob - t) / <f64>B));
    }
  }
  return total / <f64>B;
}

/** Mean over all B*D elements of (pred - target)^2; dpred = 2(pred - target)/(B*D). */
export function mse_f32(B: i32, D: i32, pred: usize, target: usize, dpred: usize): f64 {
  const n = B * D;
  if (n <= 0) return 0;
  const k: f32 = <f32>2 / <f32>n;
  const kv = f32x4.splat(k);
  let total: f64 = 0;
  let i = 0;
  // f32 partial sums over blocks of 1024 elements, flushed to f64: SIMD speed, f64-grade total.
  while (i + 4 <= n) {
    const end = min(n & ~3, i + 1024);
    let acc = f32x4.splat(0);
    for (; i < end; i += 4) {
      const o = (<usize>i) << 2;
      const d = f32x4.sub(v128.load(pred + o), v128.load(target + o));
      acc = f32x4.add(acc, f32x4.mul(d, d));
      if (dpred != 0) v128.store(dpred + o, f32x4.mul(d, kv));
    }
    total += <f64>F32x4Math.hsum(acc);
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    const d = load<f32>(pred + o) - load<f32>(target + o);
    total += <f64>(d * d);
    if (dpred != 0) store<f32>(dpred + o, d * k);
  }
  return total / <f64>n;
}

export function mse_f32_scalar(B: i32, D: i32, pred: usize, target: usize, dpred: usize): f64 {
  const n = B * D;
  if (n <= 0) return 0;
  let total: f64 = 0;
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    const d = <f64>load<f32>(pred + o) - <f64>load<f32>(target + o);
    total += d * d;
    if (dpred != 0) store<f32>(dpred + o, <f32>((2 * d) / <f64>n));
  }
  return total / <f64>n;
}

/** Index of the first maximum of row[0..C); NaN is never a maximum; 0 for an all-NaN row. */
function argmaxRow(C: i32, row: usize): i32 {
  let best: f32 = -Infinity;
  let arg = 0;
  for (let j = 0; j < C; j++) {
    const v = load<f32>(row + ((<usize>j) << 2));
    if (v > best) {
      best = v;
      arg = j;
    }
  }
  return arg;
}

/** Rows of scores[B,C] whose argmax equals the i32 label. */
export function count_correct_sparse(B: i32, C: i32, scores: usize, labels: usize): i32 {
  let correct = 0;
  for (let r = 0; r < B; r++) {
    const a = argmaxRow(C, scores + ((<usize>r * <usize>C) << 2));
    if (a == load<i32>(labels + ((<usize>r) << 2))) correct++;
  }
  return correct;
}

/** Rows of scores[B,C] whose argmax equals the argmax of the target row. */
export function count_correct_dense(B: i32, C: i32, scores: usize, targets: usize): i32 {
  let correct = 0;
  for (let r = 0; r < B; r++) {
    const o = (<usize>r * <usize>C) << 2;
    if (argmaxRow(C, scores + o) == argmaxRow(C, targets + o)) correct++;
  }
  return correct;
}
