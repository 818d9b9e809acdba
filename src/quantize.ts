// int8 weight storage: symmetric, one scale per output channel (the last axis of a Dense [In, Out]
// or Conv2D [KH, KW, C, F] kernel). w ~= q * scale with q in [-127, 127]; -128 is never used so
// the range is symmetric and negating a weight never saturates.
//
// It is a storage format: the engine dequantises once at load into f32 (Math.fround(q * scale),
// exact IEEE arithmetic, so every platform gets the same f32 weights) and computes in f32. Per
// weight the error is at most scale/2 = max|w[:, j]| / 254.

export interface QuantizedTensor {
  /** Same layout as the f32 kernel. */
  q: Int8Array;
  /** [channels] f32, >= 0 (0 for an all-zero channel). */
  scales: Float32Array;
}

/** Quantises a kernel whose last axis has `channels` entries (index % channels is the channel). */
export function quantizePerChannel(w: ArrayLike<number>, channels: number): QuantizedTensor {
  if (channels < 1 || w.length % channels !== 0)
    throw new RangeError(
      `quantize: ${w.length} weights are not a multiple of ${channels} channels`,
    );
  const maxAbs = new Float64Array(channels);
  for (let i = 0; i < w.length; i++) {
    const a = Math.abs(w[i]);
    const c = i % channels;
    if (a > maxAbs[c]) maxAbs[c] = a;
  }
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) scales[c] = maxAbs[c] / 127;
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) {
    // Divide by the f32 scale actually stored, so q * scale is the nearest grid point to w.
    const s = scales[i % channels];
    q[i] = s === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(w[i] / s)));
  }
  return { q, scales };
}

/** out[i] = fround(q[i] * scales[i % channels]). */
export function dequantizeInto(
  q: Int8Array,
  scales: ArrayLike<number>,
  channels: number,
  out: Float32Array,
  outOffset = 0,
): void {
  for (let i = 0; i < q.length; i++) out[outOffset + i] = q[i] * scales[i % channels];
}
