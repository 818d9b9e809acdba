// The kernel module: every op's forward and backward, one file per op. Pointers in, pointers out;
// nothing here allocates (runtime "stub", and the host owns the arena above heap_base()).
export * from "./memory";
export * from "./gemm";
export * from "./dense";
export * from "./conv2d";
export * from "./batchnorm";
export * from "./activations";
export * from "./dropout";
export * from "./pool";
export * from "./loss";
export * from "./optimizers";
export { kernel_isa } from "./isa";
export * from "./checks";
