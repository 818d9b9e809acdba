// Vectorised exp/expm1, partial-vector load/store and the softmax row helpers, shared by
// activations.ts and loss.ts. Not an entry file: nothing here is exported from the module.
//
// Why our own exp: the module has no imports, and AssemblyScript's Mathf.exp is a scalar call per
// lane. This is Cephes expf: Cody-Waite range reduction x = k*ln2 + r with |r| <= ln2/2 (ln2 split
// in a 9-bit head, so k*LN2_HI is exact for |k| < 2^15), then a degree-7 polynomial; measured
// relative error <= 2 ulp against float64 exp over the whole range (test/activations.test.ts).

const LOG2E: f32 = 1.44269504088896341;
const LN2_HI: f32 = 0.693359375;
const LN2_LO: f32 = -2.1219444e-4;
// expm1(r) ~= r + r^2 * P(r) on |r| <= ln2/2 (Cephes expf coefficients).
const P0: f32 = 1.98756915e-4;
const P1: f32 = 1.3981999507e-3;
const P2: f32 = 8.3334519073e-3;
const P3: f32 = 4.1665795894e-2;
const P4: f32 = 1.6666665459e-1;
const P5: f32 = 5.0000001201e-1;

// exp(x) overflows f32 above ln(FLT_MAX); below -104 it rounds to +0 even as a denormal.
const EXP_HI: f32 = 88.72283;
const EXP_LO: f32 = -104.0;
// expm1(x) is -1 in f32 for x < -17.4 (e^x < 2^-25); -25 keeps 2^k a normal number.
const EXPM1_LO: f32 = -25.0;
const EXPM1_HI: f32 = 88.0;

/**
 * Per-lane math on f32x4 vectors. Static methods because AssemblyScript's @inline, which these
 * need (Binaryen will not inline a 30-instruction body with several callers into hot loops), is
 * only valid TypeScript syntax (for Prettier and editors) on class members.
 */
export class F32x4Math {
  /** expm1 of the reduced argument r, |r| <= ln2/2. */
  @inline private static expm1Reduced(r: v128): v128 {
    let p = f32x4.add(f32x4.mul(f32x4.splat(P0), r), f32x4.splat(P1));
    p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P2));
    p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P3));
    p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P4));
    p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P5));
    return f32x4.add(r, f32x4.mul(f32x4.mul(r, r), p));
  }

  /** 2^k for integer lanes k in [-126, 127], built in the exponent bits. */
  @inline private static pow2i(k: v128): v128 {
    return i32x4.shl(i32x4.add(k, i32x4.splat(127)), 23);
  }

  /**
   * Lane-wise clamp that keeps NaN: pmax(x, lo) is `x < lo ? lo : x` and pmin(x, hi) is
   * `hi < x ? hi : x`, so a NaN lane compares false and passes through (min/max would also keep NaN
   * but cost several instructions each on x86).
   */
  @inline private static clampKeepNaN(x: v128, lo: f32, hi: f32): v128 {
    return f32x4.pmin(f32x4.pmax(x, f32x4.splat(lo)), f32x4.splat(hi));
  }

  /** e^x per lane: +inf above 88.72, +0 below -104, NaN stays NaN. */
  @inline static exp(x: v128): v128 {
    const xc = F32x4Math.clampKeepNaN(x, EXP_LO, EXP_HI);
    const kf = f32x4.nearest(f32x4.mul(xc, f32x4.splat(LOG2E)));
    const r = f32x4.sub(
      f32x4.sub(xc, f32x4.mul(kf, f32x4.splat(LN2_HI))),
      f32x4.mul(kf, f32x4.splat(LN2_LO)),
    );
    const e = f32x4.add(F32x4Math.expm1Reduced(r), f32x4.splat(1));
    // k spans [-150, 128]: split 2^k = 2^k1 * 2^k2 so both factors are normal numbers and the only
    // rounding is the final multiply (correct gradual underflow into denormals).
    const k = i32x4.trunc_sat_f32x4_s(kf);
    const k1 = i32x4.shr_s(k, 1);
    const y = f32x4.mul(f32x4.mul(e, F32x4Math.pow2i(k1)), F32x4Math.pow2i(i32x4.sub(k, k1)));
    return v128.bitselect(f32x4.splat(Infinity), y, f32x4.gt(x, f32x4.splat(EXP_HI)));
  }

  /**
   * e^x - 1 per lane for x <= 88, accurate near 0 where exp(x)-1 would cancel:
   * expm1(x) = 2^k*expm1(r) + (2^k - 1), which is exactly expm1(r) when k = 0.
   */
  @inline static expm1(x: v128): v128 {
    const xc = F32x4Math.clampKeepNaN(x, EXPM1_LO, EXPM1_HI);
    const kf = f32x4.nearest(f32x4.mul(xc, f32x4.splat(LOG2E)));
    const r = f32x4.sub(
      f32x4.sub(xc, f32x4.mul(kf, f32x4.splat(LN2_HI))),
      f32x4.mul(kf, f32x4.splat(LN2_LO)),
    );
    const s = F32x4Math.pow2i(i32x4.trunc_sat_f32x4_s(kf));
    return f32x4.add(f32x4.mul(s, F32x4Math.expm1Reduced(r)), f32x4.sub(s, f32x4.splat(1)));
  }

  /** Horizontal sum of the 4 lanes. */
  @inline static hsum(v: v128): f32 {
    return (
      f32x4.extract_lane(v, 0) +
      f32x4.extract_lane(v, 1) +
      (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3))
    );
  }

  /**
   * Loads k (1..3) floats into lanes 0..k-1, zeros elsewhere: tails run the same vector math as
   * the body without reading past the end of a buffer (which could trap at the end of memory).
   */
  @inline static loadPartial(p: usize, k: i32): v128 {
    let v = f32x4.replace_lane(f32x4.splat(0), 0, load<f32>(p));
    if (k > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
    if (k > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
    return v;
  }

  /** Stores lanes 0..k-1 (k in 1..3) of v. */
  @inline static storePartial(p: usize, v: v128, k: i32): void {
    store<f32>(p, f32x4.extract_lane(v, 0));
    if (k > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
    if (k > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
  }
}

// ---- softmax rows (activations.ts softmax, loss.ts fused softmax + cross-entropy) ----------

/** max over x[0..C), ignoring NaN (a NaN row still gives NaN probabilities via exp). */
export function rowMax_f32(C: i32, x: usize): f32 {
  let m = f32x4.splat(-Infinity);
  let j = 0;
  for (; j + 4 <= C; j += 4) m = f32x4.pmax(m, v128.load(x + ((<usize>j) << 2)));
  let s = f32x4.extract_lane(m, 0);
  let v = f32x4.extract_lane(m, 1);
  if (v > s) s = v;
  v = f32x4.extract_lane(m, 2);
  if (v > s) s = v;
  v = f32x4.extract_lane(m, 3);
  if (v > s) s = v;
  for (; j < C; j++) {
    v = load<f32>(x + ((<usize>j) << 2));
    if (v > s) s = v;
  }
  return s;
}

/** y[j] = exp(x[j] - m) for j < C; returns the sum of the y. */
export function rowExpShift_f32(C: i32, x: usize, m: f32, y: usize): f32 {
  const mv = f32x4.splat(m);
  let acc = f32x4.splat(0);
  let j = 0;
  for (; j + 4 <= C; j += 4) {
    const o = (<usize>j) << 2;
    const e = F32x4Math.exp(f32x4.sub(v128.load(x + o), mv));
    v128.store(y + o, e);
    acc = f32x4.add(acc, e);
  }
  if (j < C) {
    const o = (<usize>j) << 2;
    // Zeroed lanes beyond the row would give exp(0 - m); mask them out of the sum.
    const k = C - j;
    let e = F32x4Math.exp(f32x4.sub(F32x4Math.loadPartial(x + o, k), mv));
    F32x4Math.storePartial(y + o, e, k);
    const keep = i32x4.lt_s(i32x4(0, 1, 2, 3), i32x4.splat(k));
    acc = f32x4.add(acc, v128.and(e, keep));
  }
  return F32x4Math.hsum(acc);
}

/** y[j] /= s for j < C. */
export function rowDivide_f32(C: i32, y: usize, s: f32): void {
  const sv = f32x4.splat(s);
  let j = 0;
  for (; j + 4 <= C; j += 4) {
    const o = (<usize>j) << 2;
    v128.store(y + o, f32x4.div(v128.load(y + o), sv));
  }
  for (; j < C; j++) {
    const o = (<usize>j) << 2;
    store<f32>(y + o, load<f32>(y + o) / s);
  }
}
