// Memory helpers the host needs to plan its arena. Kernels never allocate: every buffer lives in
// the host-planned arena that starts at heap_base() (the end of AssemblyScript's static data).

/** First byte the host may use for its arena, rounded up to 64 bytes (a cache line). */
export function heap_base(): usize {
  return (__heap_base + 63) & ~(<usize>63);
}

/** dst[0..n) = value (f32). */
export function fill_f32(dst: usize, n: i32, value: f32): void {
  const v = f32x4.splat(value);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(dst + ((<usize>i) << 2), v);
  for (; i < n; i++) store<f32>(dst + ((<usize>i) << 2), value);
}

/** dst[0..n) = src[0..n) (f32); regions may overlap. */
export function copy_f32(dst: usize, src: usize, n: i32): void {
  memory.copy(dst, src, (<usize>n) << 2);
}

/**
 * dst[r, :] = src[idx[r], :] for r < rows; rows are rowLen floats, idx is i32. Builds a shuffled
 * training batch from a dataset held in module memory. Indices are not range-checked: the host
 * validates them against the dataset's row count once, when it makes the permutation.
 */
export function gather_rows_f32(rows: i32, rowLen: i32, src: usize, idx: usize, dst: usize): void {
  const rowBytes = (<usize>rowLen) << 2;
  const vecBytes = (<usize>(rowLen & ~3)) << 2;
  for (let r = 0; r < rows; r++) {
    const from = src + <usize>load<i32>(idx + ((<usize>r) << 2)) * rowBytes;
    const to = dst + <usize>r * rowBytes;
    // A vector loop, not memory.copy: rows are often short (tabular data), where the bulk-memory
    // call costs more than the copy.
    let o: usize = 0;
    for (; o < vecBytes; o += 16) v128.store(to + o, v128.load(from + o));
    for (; o < rowBytes; o += 4) store<f32>(to + o, load<f32>(from + o));
  }
}

export function gather_rows_f32_scalar(
  rows: i32,
  rowLen: i32,
  src: usize,
  idx: usize,
  dst: usize,
): void {
  for (let r = 0; r < rows; r++) {
    const i = load<i32>(idx + ((<usize>r) << 2));
    for (let j = 0; j < rowLen; j++) {
      store<f32>(
        dst + ((<usize>r * <usize>rowLen + <usize>j) << 2),
        load<f32>(src + ((<usize>i * <usize>rowLen + <usize>j) << 2)),
      );
    }
  }
}

/** dst[r] = src[idx[r]] for r < rows (i32 labels alongside gather_rows_f32). */
export function gather_i32(rows: i32, src: usize, idx: usize, dst: usize): void {
  for (let r = 0; r < rows; r++) {
    const i = load<i32>(idx + ((<usize>r) << 2));
    store<i32>(dst + ((<usize>r) << 2), load<i32>(src + ((<usize>i) << 2)));
  }
}

// Gradient reduction across data-parallel replicas (src/dataParallel.ts): every replica sums the
// shards' gradients, each weighted by its share of the batch, as
//   acc = g0*s0;  acc = acc + g1*s1;  acc = acc + g2*s2; ...
// with every product and sum rounded to f32 on its own (a mul then an add, never a fused
// multiply-add, in both kernel builds), so the replicas' sums are bit-identical.

/** dst[0..n) = dst*sd + src*ss, each product rounded, then their sum: two shards in one pass. */
export function lincomb2_f32(n: i32, dst: usize, sd: f32, src: usize, ss: f32): void {
  const vd = f32x4.splat(sd);
  const vs = f32x4.splat(ss);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = dst + ((<usize>i) << 2);
    const q = src + ((<usize>i) << 2);
    v128.store(p, f32x4.add(f32x4.mul(v128.load(p), vd), f32x4.mul(v128.load(q), vs)));
  }
  for (; i < n; i++) {
    const p = dst + ((<usize>i) << 2);
    store<f32>(p, load<f32>(p) * sd + load<f32>(src + ((<usize>i) << 2)) * ss);
  }
}

export function lincomb2_f32_scalar(n: i32, dst: usize, sd: f32, src: usize, ss: f32): void {
  for (let i = 0; i < n; i++) {
    const p = dst + ((<usize>i) << 2);
    store<f32>(p, load<f32>(p) * sd + load<f32>(src + ((<usize>i) << 2)) * ss);
  }
}

/** dst[0..n) += src[0..n)*s (the product rounded, then the sum): one more shard into the sum. */
export function axpy_f32(n: i32, dst: usize, src: usize, s: f32): void {
  const sv = f32x4.splat(s);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = dst + ((<usize>i) << 2);
    v128.store(p, f32x4.add(v128.load(p), f32x4.mul(v128.load(src + ((<usize>i) << 2)), sv)));
  }
  for (; i < n; i++) {
    const p = dst + ((<usize>i) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(src + ((<usize>i) << 2)) * s);
  }
}

export function axpy_f32_scalar(n: i32, dst: usize, src: usize, s: f32): void {
  for (let i = 0; i < n; i++) {
    const p = dst + ((<usize>i) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(src + ((<usize>i) << 2)) * s);
  }
}

/** dst[0..n) *= s. */
export function scale_f32(n: i32, dst: usize, s: f32): void {
  const sv = f32x4.splat(s);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = dst + ((<usize>i) << 2);
    v128.store(p, f32x4.mul(v128.load(p), sv));
  }
  for (; i < n; i++) {
    const p = dst + ((<usize>i) << 2);
    store<f32>(p, load<f32>(p) * s);
  }
}

export function scale_f32_scalar(n: i32, dst: usize, s: f32): void {
  for (let i = 0; i < n; i++) {
    const p = dst + ((<usize>i) << 2);
    store<f32>(p, load<f32>(p) * s);
  }
}
