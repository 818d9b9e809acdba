// Cold-start baseline: a Node process that reads the test image as every runtime's child does (the
// same built-in access, see edgenn.mjs) and prints: the floor every runtime starts from.
// Usage: node bare.mjs input.f32
// process.getBuiltinModule: Node >= 20.16; older Node gets a CommonJS require.
const builtin = process.getBuiltinModule
  ? (id) => process.getBuiltinModule(id)
  : (await import("node:module")).createRequire(import.meta.url);
const { readFileSync } = builtin("node:fs");

const b = readFileSync(process.argv[2]);
console.log(`ready ${b.byteLength}`);
