// The inference kernel module: only what src/engine.ts calls (forward kernels, weight packing, the
// model-file checks). The same source files as index.ts, so every kernel compiles to the same code
// and gives the same bits; without the backward passes, optimizers, losses and scalar twins it is
// under half the size, which is what an edge function or a page downloads and compiles.
export { heap_base } from "./memory";
export {
  gemm_scratch_bytes,
  gemm_packed_b_floats,
  gemm_pack_b_f32,
  gemm_f32_prepacked,
} from "./gemm";
export { dense_fwd_f32 } from "./dense";
export {
  conv2d_scratch_bytes,
  conv2d_nhwc_fwd_f32,
  conv2d_prepared_weights_floats,
  conv2d_prepare_weights_f32,
  conv2d_nhwc_fwd_prepared_f32,
} from "./conv2d";
export { batchnorm_infer_fwd_f32 } from "./batchnorm";
export {
  relu_fwd_f32,
  leaky_relu_fwd_f32,
  elu_fwd_f32,
  tanh_fwd_f32,
  sigmoid_fwd_f32,
  softmax_fwd_f32,
} from "./activations";
export { maxpool2d_fwd_f32, avgpool2d_fwd_f32, global_avgpool2d_fwd_f32 } from "./pool";
export { kernel_isa } from "./isa";
export { crc32_u8, first_nonfinite_f32 } from "./checks";
