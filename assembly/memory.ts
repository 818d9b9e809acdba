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
  for (; i + 4 <= n; i += 4) v128.store(dst + (<usize>i << 2), v);
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), value);
}

/** dst[0..n) = src[0..n) (f32); regions may overlap. */
export function copy_f32(dst: usize, src: usize, n: i32): void {
  memory.copy(dst, src, <usize>n << 2);
}
