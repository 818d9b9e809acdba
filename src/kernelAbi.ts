// The contract between the host and the kernel module (assembly/). Every pointer is a byte offset
// into the module's memory, planned by the host (src/arena.ts); kernels never allocate. Shapes are
// row-major; "R" is a row count (batch x spatial positions), "C" the last (feature/channel) axis.
// A pointer argument of 0 means "absent" where the comment says so: the host arena starts at
// heap_base() > 0, so no real tensor ever lives at 0.
//
// Each SIMD kernel `name_f32` has a plain scalar twin `name_f32_scalar` with the same signature,
// used only as a test oracle.

export type Ptr = number;

export interface KernelAbi {
  memory: WebAssembly.Memory;

  // assembly/memory.ts
  heap_base(): Ptr;
  /** 0 for the baseline SIMD build, 1 for the relaxed-SIMD (FMA) build (assembly/isa.ts). */
  kernel_isa(): number;
  fill_f32(dst: Ptr, n: number, value: number): void;
  copy_f32(dst: Ptr, src: Ptr, n: number): void;
  /** dst[r, :] = src[idx[r], :] for r < rows; idx is i32. Fills a training batch from the dataset. */
  gather_rows_f32(rows: number, rowLen: number, src: Ptr, idx: Ptr, dst: Ptr): void;
  /** dst[r] = src[idx[r]] (i32 labels). */
  gather_i32(rows: number, src: Ptr, idx: Ptr, dst: Ptr): void;
  /** dst[0..n) = dst*sd + src*ss, products and sum each rounded (two shards' gradients). */
  lincomb2_f32(n: number, dst: Ptr, sd: number, src: Ptr, ss: number): void;
  /** dst[0..n) += src*s, product and sum each rounded (one more shard's gradients). */
  axpy_f32(n: number, dst: Ptr, src: Ptr, s: number): void;
  /** dst[0..n) *= s. */
  scale_f32(n: number, dst: Ptr, s: number): void;

  // assembly/checks.ts — model-file integrity checks on the cold-start path.
  /** CRC-32 (zlib's) continued from crc (0 to start) over the bytes [ptr, ptr+n); slicing-by-8. */
  crc32_u8(crc: number, ptr: Ptr, n: number): number;
  /** Scalar twin of crc32_u8: the byte-at-a-time loop. */
  crc32_u8_bytewise(crc: number, ptr: Ptr, n: number): number;
  /** Index of the first NaN/Infinity in x[0..n), or -1. */
  first_nonfinite_f32(x: Ptr, n: number): number;

  // assembly/gemm.ts
  /** Bytes of scratch (packing buffers) gemm_f32 needs for an M x N x K product. */
  gemm_scratch_bytes(M: number, N: number, K: number): number;
  /**
   * C[M,N] = A[M,K] . B[K,N] (+ C[M,N] when accumulate != 0) (+ bias[N] when bias != 0), every
   * element then clamped to [lo, hi] (pass -Infinity/Infinity for none, 0/Infinity for ReLU).
   * Element (i,k) of A is at A + 4*(i*rsA + k*csA); element (k,j) of B at B + 4*(k*rsB + j*csB):
   * strides express transposes (A^T: rsA=1, csA=lda). C has row stride ldc (floats).
   */
  gemm_f32(
    M: number,
    N: number,
    K: number,
    A: Ptr,
    rsA: number,
    csA: number,
    B: Ptr,
    rsB: number,
    csB: number,
    C: Ptr,
    ldc: number,
    bias: Ptr,
    lo: number,
    hi: number,
    accumulate: number,
    scratch: Ptr,
  ): void;
  /** Floats of gemm_pack_b_f32's output for a K x N matrix (8-column panels, zero-padded). */
  gemm_packed_b_floats(K: number, N: number): number;
  /** Packs B[K,N] (strides as in gemm_f32) once into dst for gemm_f32_prepacked. */
  gemm_pack_b_f32(K: number, N: number, B: Ptr, rsB: number, csB: number, dst: Ptr): void;
  /** gemm_f32 with B pre-packed by gemm_pack_b_f32 (inference weights). */
  gemm_f32_prepacked(
    M: number,
    N: number,
    K: number,
    A: Ptr,
    rsA: number,
    csA: number,
    P: Ptr,
    C: Ptr,
    ldc: number,
    bias: Ptr,
    lo: number,
    hi: number,
    accumulate: number,
    scratch: Ptr,
  ): void;
  gemm_f32_scalar(
    M: number,
    N: number,
    K: number,
    A: Ptr,
    rsA: number,
    csA: number,
    B: Ptr,
    rsB: number,
    csB: number,
    C: Ptr,
    ldc: number,
    bias: Ptr,
    lo: number,
    hi: number,
    accumulate: number,
    scratch: Ptr,
  ): void;

  // assembly/dense.ts — x[B,In], w[In,Out] (Keras/TF.js kernel layout), b[Out], y[B,Out]
  dense_scratch_bytes(B: number, In: number, Out: number): number;
  /** y = clamp(x.w + b, lo, hi); b may be 0 (no bias). */
  dense_fwd_f32(
    B: number,
    In: number,
    Out: number,
    x: Ptr,
    w: Ptr,
    b: Ptr,
    y: Ptr,
    lo: number,
    hi: number,
    scratch: Ptr,
  ): void;
  /** dx = dy.w^T (skipped when dx == 0); dw = x^T.dy; db = sum over rows of dy (skipped when db == 0). */
  dense_bwd_f32(
    B: number,
    In: number,
    Out: number,
    x: Ptr,
    w: Ptr,
    dy: Ptr,
    dx: Ptr,
    dw: Ptr,
    db: Ptr,
    scratch: Ptr,
  ): void;

  // assembly/conv2d.ts — NHWC: x[N,H,W,C], w[KH,KW,C,F] (TF HWIO layout), bias[F], y[N,OH,OW,F].
  // padT/padL are the zero rows/cols added before the image (the host computes TF "same"/"valid").
  conv2d_scratch_bytes(
    N: number,
    H: number,
    W: number,
    C: number,
    KH: number,
    KW: number,
    SH: number,
    SW: number,
    padT: number,
    padL: number,
    OH: number,
    OW: number,
    F: number,
  ): number;
  conv2d_nhwc_fwd_f32(
    N: number,
    H: number,
    W: number,
    C: number,
    KH: number,
    KW: number,
    SH: number,
    SW: number,
    padT: number,
    padL: number,
    OH: number,
    OW: number,
    F: number,
    x: Ptr,
    w: Ptr,
    bias: Ptr,
    y: Ptr,
    lo: number,
    hi: number,
    scratch: Ptr,
  ): void;
  /** Floats of conv2d_prepare_weights_f32's output for this conv; 0: it has none (not Winograd). */
  conv2d_prepared_weights_floats(
    C: number,
    F: number,
    KH: number,
    KW: number,
    SH: number,
    SW: number,
  ): number;
  /** dst = w[3,3,C,F] transformed and packed once for conv2d_nhwc_fwd_prepared_f32 (inference). */
  conv2d_prepare_weights_f32(C: number, F: number, w: Ptr, dst: Ptr, scratch: Ptr): void;
  /** conv2d_nhwc_fwd_f32 of a conv with prepared weights (3x3, stride 1): the same bits. */
  conv2d_nhwc_fwd_prepared_f32(
    N: number,
    H: number,
    W: number,
    C: number,
    padT: number,
    padL: number,
    OH: number,
    OW: number,
    F: number,
    x: Ptr,
    prepared: Ptr,
    bias: Ptr,
    y: Ptr,
    lo: number,
    hi: number,
    scratch: Ptr,
  ): void;
  /** dx[N,H,W,C] = gradient of the input (overwritten). */
  conv2d_nhwc_bwd_data_f32(
    N: number,
    H: number,
    W: number,
    C: number,
    KH: number,
    KW: number,
    SH: number,
    SW: number,
    padT: number,
    padL: number,
    OH: number,
    OW: number,
    F: number,
    dy: Ptr,
    w: Ptr,
    dx: Ptr,
    scratch: Ptr,
  ): void;
  /** dw[KH,KW,C,F] (overwritten); db[F] = sum of dy over N,OH,OW (skipped when db == 0). */
  conv2d_nhwc_bwd_filter_f32(
    N: number,
    H: number,
    W: number,
    C: number,
    KH: number,
    KW: number,
    SH: number,
    SW: number,
    padT: number,
    padL: number,
    OH: number,
    OW: number,
    F: number,
    x: Ptr,
    dy: Ptr,
    dw: Ptr,
    db: Ptr,
    scratch: Ptr,
  ): void;

  // assembly/batchnorm.ts — x[R,C], per-channel vectors [C]. gamma == 0 means 1 (scale off),
  // beta == 0 means 0 (center off).
  /** Training: biased batch mean/variance; y = gamma*(x-mean)*invStd + beta; saves mean, var, invStd. */
  batchnorm_train_fwd_f32(
    R: number,
    C: number,
    x: Ptr,
    gamma: Ptr,
    beta: Ptr,
    eps: number,
    y: Ptr,
    batchMean: Ptr,
    batchVar: Ptr,
    batchInvStd: Ptr,
  ): void;
  /** moving = moving*momentum + batch*(1-momentum) for mean and (biased) variance. */
  batchnorm_update_running_f32(
    C: number,
    runMean: Ptr,
    runVar: Ptr,
    batchMean: Ptr,
    batchVar: Ptr,
    momentum: number,
  ): void;
  /** Inference: y = gamma*(x-runMean)/sqrt(runVar+eps) + beta. */
  batchnorm_infer_fwd_f32(
    R: number,
    C: number,
    x: Ptr,
    gamma: Ptr,
    beta: Ptr,
    runMean: Ptr,
    runVar: Ptr,
    eps: number,
    y: Ptr,
  ): void;
  /** dx (overwritten), dgamma/dbeta (overwritten; skipped when 0) from the saved batch statistics. */
  batchnorm_bwd_f32(
    R: number,
    C: number,
    x: Ptr,
    dy: Ptr,
    gamma: Ptr,
    batchMean: Ptr,
    batchInvStd: Ptr,
    dx: Ptr,
    dgamma: Ptr,
    dbeta: Ptr,
  ): void;

  // assembly/activations.ts — elementwise over n floats; x input, y output.
  relu_fwd_f32(n: number, x: Ptr, y: Ptr): void;
  relu_bwd_f32(n: number, y: Ptr, dy: Ptr, dx: Ptr): void;
  leaky_relu_fwd_f32(n: number, x: Ptr, y: Ptr, alpha: number): void;
  leaky_relu_bwd_f32(n: number, x: Ptr, dy: Ptr, dx: Ptr, alpha: number): void;
  elu_fwd_f32(n: number, x: Ptr, y: Ptr, alpha: number): void;
  elu_bwd_f32(n: number, x: Ptr, y: Ptr, dy: Ptr, dx: Ptr, alpha: number): void;
  tanh_fwd_f32(n: number, x: Ptr, y: Ptr): void;
  tanh_bwd_f32(n: number, y: Ptr, dy: Ptr, dx: Ptr): void;
  sigmoid_fwd_f32(n: number, x: Ptr, y: Ptr): void;
  sigmoid_bwd_f32(n: number, y: Ptr, dy: Ptr, dx: Ptr): void;
  /** Row-wise softmax over x[R,C]. */
  softmax_fwd_f32(R: number, C: number, x: Ptr, y: Ptr): void;
  softmax_bwd_f32(R: number, C: number, y: Ptr, dy: Ptr, dx: Ptr): void;

  // assembly/dropout.ts — inverted dropout; mask[n] holds 0 or 1/(1-rate).
  rng_state_bytes(): number;
  rng_seed(state: Ptr, seed: number): void;
  /** Uniform float in [0,1) from the state (advances it); for tests and host use. */
  rng_next_f32(state: Ptr): number;
  dropout_fwd_train_f32(n: number, x: Ptr, y: Ptr, mask: Ptr, rate: number, state: Ptr): void;
  dropout_bwd_f32(n: number, dy: Ptr, mask: Ptr, dx: Ptr): void;

  // assembly/pool.ts — NHWC; x[N,H,W,C], y[N,OH,OW,C]; argmax[N,OH,OW,C] i32 (0 = don't record).
  maxpool2d_fwd_f32(
    N: number,
    H: number,
    W: number,
    C: number,
    PH: number,
    PW: number,
    SH: number,
    SW: number,
    padT: number,
    padL: number,
    OH: number,
    OW: number,
    x: Ptr,
    y: Ptr,
    argmax: Ptr,
  ): void;
  /** dx[N,H,W,C] overwritten (zeroed, then each dy scattered to its argmax). */
  maxpool2d_bwd_f32(
    N: number,
    H: number,
    W: number,
    C: number,
    OH: number,
    OW: number,
    dy: Ptr,
    argmax: Ptr,
    dx: Ptr,
  ): void;
  /** Average over the window's in-image elements (padding excluded, as TF does). */
  avgpool2d_fwd_f32(
    N: number,
    H: number,
    W: number,
    C: number,
    PH: number,
    PW: number,
    SH: number,
    SW: number,
    padT: number,
    padL: number,
    OH: number,
    OW: number,
    x: Ptr,
    y: Ptr,
  ): void;
  avgpool2d_bwd_f32(
    N: number,
    H: number,
    W: number,
    C: number,
    PH: number,
    PW: number,
    SH: number,
    SW: number,
    padT: number,
    padL: number,
    OH: number,
    OW: number,
    dy: Ptr,
    dx: Ptr,
  ): void;
  /** x[N,HW,C] -> y[N,C] mean over HW. */
  global_avgpool2d_fwd_f32(N: number, HW: number, C: number, x: Ptr, y: Ptr): void;
  global_avgpool2d_bwd_f32(N: number, HW: number, C: number, dy: Ptr, dx: Ptr): void;

  // assembly/loss.ts — logits[B,C]; probs[B,C] written; dlogits[B,C] = d(mean loss)/dlogits
  // (skipped when 0). Returns the mean loss over the batch.
  softmax_xent_sparse_f32(
    B: number,
    C: number,
    logits: Ptr,
    labels: Ptr,
    probs: Ptr,
    dlogits: Ptr,
  ): number;
  softmax_xent_dense_f32(
    B: number,
    C: number,
    logits: Ptr,
    targets: Ptr,
    probs: Ptr,
    dlogits: Ptr,
  ): number;
  /** Mean over all B*D elements of (pred-target)^2; dpred = 2(pred-target)/(B*D) (skipped when 0). */
  mse_f32(B: number, D: number, pred: Ptr, target: Ptr, dpred: Ptr): number;
  /** Rows whose argmax equals the i32 label. */
  count_correct_sparse(B: number, C: number, scores: Ptr, labels: Ptr): number;
  /** Rows whose argmax equals the argmax of the target row. */
  count_correct_dense(B: number, C: number, scores: Ptr, targets: Ptr): number;

  // assembly/optimizers.ts — w, g, state all [n]. Keras conventions.
  sgd_f32(n: number, w: Ptr, g: Ptr, lr: number): void;
  /** v = momentum*v - lr*g; w += v (nesterov: w += momentum*v - lr*g). */
  sgd_momentum_f32(
    n: number,
    w: Ptr,
    g: Ptr,
    v: Ptr,
    lr: number,
    momentum: number,
    nesterov: number,
  ): void;
  /**
   * Adam/AdamW step. w -= decay*w first (decay = lr*weightDecay for AdamW, 0 for Adam); then
   * m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; w -= lrT*m/(sqrt(v)+eps), where the host passes the
   * bias-corrected lrT = lr*sqrt(1-b2^t)/(1-b1^t).
   */
  adam_f32(
    n: number,
    w: Ptr,
    g: Ptr,
    m: Ptr,
    v: Ptr,
    lrT: number,
    beta1: number,
    beta2: number,
    eps: number,
    decay: number,
  ): void;
}

/** Every export of the module, for tests that reach the scalar twins by name. */
export type KernelName = Exclude<keyof KernelAbi, "memory">;
