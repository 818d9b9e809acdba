// Module types wrangler gives worker/edge.ts (wrangler.toml rules): a .wasm import is a compiled
// WebAssembly.Module (CompiledWasm), an .enn import is the file's bytes (Data).
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
declare module "*.enn" {
  const bytes: ArrayBuffer;
  export default bytes;
}
