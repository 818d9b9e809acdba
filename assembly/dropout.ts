// Inverted dropout (tf.layers.dropout in training): mask[i] = 0 with probability rate, else
// 1/(1-rate); y = x*mask; the backward is dx = dy*mask. At inference the host skips the layer.
//
// The random numbers come from four interleaved xoshiro128** generators, one per SIMD lane, whose
// state lives in host memory (so the host can checkpoint it, and the same seed gives the same
// masks bit for bit on every platform). State layout, 64 bytes: words s0..s3 of the algorithm,
// each an i32x4 holding that word for lanes 0..3. Element i of a mask comes from lane i % 4 of
// step floor(i/4); a tail of n % 4 elements takes one more step and drops the unused lanes.

const STATE_BYTES: i32 = 64;

export function rng_state_bytes(): i32 {
  return STATE_BYTES;
}

/** splitmix32 (Hash Prospector constants): spreads consecutive seeds over the whole state. */
function splitmix32(z: u32): u32 {
  z ^= z >>> 16;
  z *= 0x21f0aaad;
  z ^= z >>> 15;
  z *= 0x735a2d97;
  z ^= z >>> 15;
  return z;
}

/** Expands a 32-bit seed into the 16 state words (every lane different, none all-zero). */
export function rng_seed(state: usize, seed: u32): void {
  let z = seed;
  for (let w = 0; w < 16; w++) {
    z += 0x9e3779b9;
    store<u32>(state + ((<usize>w) << 2), splitmix32(z));
  }
  // xoshiro's all-zero state is a fixed point; splitmix32 is a bijection, so this needs four
  // zero outputs in one lane (never in practice), but the guard is cheap.
  for (let lane = 0; lane < 4; lane++) {
    const o = (<usize>lane) << 2;
    const any =
      load<u32>(state + o) |
      load<u32>(state + o, 16) |
      load<u32>(state + o, 32) |
      load<u32>(state + o, 48);
    if (any == 0) store<u32>(state + o, 0x9e3779b9);
  }
}

function rotl_i32x4(v: v128, k: i32): v128 {
  return v128.or(i32x4.shl(v, k), i32x4.shr_u(v, 32 - k));
}

/** One xoshiro128** step in every lane: returns 4 fresh u32s, advances the state in memory. */
function xoshiroStep(state: usize): v128 {
  let s0 = v128.load(state);
  let s1 = v128.load(state, 16);
  let s2 = v128.load(state, 32);
  let s3 = v128.load(state, 48);
  const result = i32x4.mul(rotl_i32x4(i32x4.mul(s1, i32x4.splat(5)), 7), i32x4.splat(9));
  const t = i32x4.shl(s1, 9);
  s2 = v128.xor(s2, s0);
  s3 = v128.xor(s3, s1);
  s1 = v128.xor(s1, s2);
  s0 = v128.xor(s0, s3);
  s2 = v128.xor(s2, t);
  s3 = rotl_i32x4(s3, 11);
  v128.store(state, s0);
  v128.store(state, s1, 16);
  v128.store(state, s2, 32);
  v128.store(state, s3, 48);
  return result;
}

/** The top 24 bits as a float in [0, 1), exactly (every value is a multiple of 2^-24). */
function unitFloat_f32x4(bits: v128): v128 {
  // After >>> 8 the value fits in 24 bits, so the signed convert (one instruction) is exact.
  return f32x4.mul(
    f32x4.convert_i32x4_s(i32x4.shr_u(bits, 8)),
    f32x4.splat(<f32>5.9604644775390625e-8),
  );
}

/** Uniform float in [0, 1): lane 0 of one step (the other lanes' draws are discarded). */
export function rng_next_f32(state: usize): f32 {
  return f32x4.extract_lane(unitFloat_f32x4(xoshiroStep(state)), 0);
}

/**
 * x[n] -> y[n] = x*mask, mask[n] in {0, 1/(1-rate)}: element i is kept when its uniform draw
 * u >= rate, so P(keep) = 1-rate to 2^-24; rate 0 keeps everything with mask exactly 1 (y == x).
 */
export function dropout_fwd_train_f32(
  n: i32,
  x: usize,
  y: usize,
  mask: usize,
  rate: f32,
  state: usize,
): void {
  const scale = f32x4.splat(<f32>1 / (<f32>1 - rate));
  const rv = f32x4.splat(rate);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    const m = v128.and(f32x4.ge(unitFloat_f32x4(xoshiroStep(state)), rv), scale);
    v128.store(mask + o, m);
    v128.store(y + o, f32x4.mul(v128.load(x + o), m));
  }
  if (i < n) {
    const m = v128.and(f32x4.ge(unitFloat_f32x4(xoshiroStep(state)), rv), scale);
    for (let lane = 0; i < n; i++, lane++) {
      const o = (<usize>i) << 2;
      // extract_lane takes a constant lane index, hence the chain (lane < 3 in a tail).
      const mi =
        lane == 0
          ? f32x4.extract_lane(m, 0)
          : lane == 1
            ? f32x4.extract_lane(m, 1)
            : f32x4.extract_lane(m, 2);
      store<f32>(mask + o, mi);
      store<f32>(y + o, load<f32>(x + o) * mi);
    }
  }
}

export function dropout_bwd_f32(n: i32, dy: usize, mask: usize, dx: usize): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = (<usize>i) << 2;
    v128.store(dx + o, f32x4.mul(v128.load(dy + o), v128.load(mask + o)));
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    store<f32>(dx + o, load<f32>(dy + o) * load<f32>(mask + o));
  }
}

/** Scalar xoshiro128** over the same 4-lane state: the bit-exact oracle for the SIMD kernel. */
export function dropout_fwd_train_f32_scalar(
  n: i32,
  x: usize,
  y: usize,
  mask: usize,
  rate: f32,
  state: usize,
): void {
  const scale: f32 = <f32>1 / (<f32>1 - rate);
  for (let i0 = 0; i0 < n; i0 += 4) {
    for (let lane = 0; lane < 4; lane++) {
      const o = (<usize>lane) << 2;
      let s0 = load<u32>(state + o);
      let s1 = load<u32>(state + o, 16);
      let s2 = load<u32>(state + o, 32);
      let s3 = load<u32>(state + o, 48);
      const result = rotl<u32>(s1 * 5, 7) * 9;
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = rotl<u32>(s3, 11);
      store<u32>(state + o, s0);
      store<u32>(state + o, s1, 16);
      store<u32>(state + o, s2, 32);
      store<u32>(state + o, s3, 48);
      const i = i0 + lane;
      if (i < n) {
        const u = <f32>(result >>> 8) * <f32>5.9604644775390625e-8;
        const m: f32 = u >= rate ? scale : 0;
        store<f32>(mask + ((<usize>i) << 2), m);
        store<f32>(y + ((<usize>i) << 2), load<f32>(x + ((<usize>i) << 2)) * m);
      }
    }
  }
}

export function dropout_bwd_f32_scalar(n: i32, dy: usize, mask: usize, dx: usize): void {
  for (let i = 0; i < n; i++) {
    const o = (<usize>i) << 2;
    store<f32>(dx + o, load<f32>(dy + o) * load<f32>(mask + o));
  }
}
