// The one place where the two kernel builds differ (XNNPACK's "__wasmsimd" vs
// "__wasmrelaxedsimd" variants, from one source):
//   build/edgenn.wasm          asconfig target "release": WASM SIMD, a*b+c is a mul then an add
//                              (two roundings). Runs everywhere WASM SIMD does.
//   build/edgenn.relaxed.wasm  target "relaxed" (--enable relaxed-simd): a*b+c is
//                              f32x4.relaxed_madd, one FMA instruction where the CPU has one (V8 on
//                              x86 with FMA3, ARM64), one rounding and one instruction instead of two.
// "Relaxed" means the engine may pick either rounding, so the builds agree to rounding error, not
// bit for bit (test/relaxedSimd.test.ts). ASC_FEATURE_RELAXED_SIMD is a compile-time constant: each
// build compiles only its own branch, so the baseline module holds no relaxed opcode (which a
// runtime without relaxed SIMD would refuse to compile).

/** SIMD primitives whose instruction depends on the build. Static @inline methods: see f32x4_math.ts. */
export class Isa {
  /**
   * a*b + c per lane. The baseline's operand order, c + a*b, matches the add(acc, mul(a, b)) the
   * kernels were written with, so the baseline build compiles to the same code as before.
   */
  @inline static madd(a: v128, b: v128, c: v128): v128 {
    if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
    return f32x4.add(c, f32x4.mul(a, b));
  }

  /**
   * Scalar a*b + c rounded as Isa.madd rounds each lane (WASM has no scalar FMA, so the relaxed
   * build runs it in lane 0 of a vector). Scalar column tails use it so that an output does not
   * depend on whether its column fell in a vector or in the tail: the engine promises each sample's
   * output is independent of the batch it runs in, and batch size decides the GEMM path.
   */
  @inline static maddScalar(a: f32, b: f32, c: f32): f32 {
    if (ASC_FEATURE_RELAXED_SIMD)
      return f32x4.extract_lane(
        f32x4.relaxed_madd(f32x4.splat(a), f32x4.splat(b), f32x4.splat(c)),
        0,
      );
    return c + a * b;
  }
}

/** 1 in the relaxed-SIMD build, 0 in the baseline: lets the host check which module it loaded. */
export function kernel_isa(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}
