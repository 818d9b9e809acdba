// Cloudflare Worker entry: serves an .enn model over HTTP (the contract is src/serveHandler.ts,
// described in docs/SERVING.md). Both the kernels and the model are imported statically: Workers
// refuse to compile WebAssembly from bytes at run time ("Wasm code generation disallowed by
// embedder"), so the kernel module must arrive compiled, as a CompiledWasm module; the model is a
// Data module (wrangler.toml's rules). To serve a model from R2 or KV instead, bind MODEL_BUCKET or
// MODEL_KV and set MODEL_KEY. `npm run edge:dev` builds dist-edge-model/model.enn first.
// workerd could run the relaxed-SIMD build (FMA, ~1.25x), but its rounding differs from the
// baseline's: the Worker runs the baseline build so that it answers with the same bits as Node 20's
// engine and `edgenn serve` (GET /model says which build answers). It is the inference-only build
// (assembly/inference.ts: the same kernels, 9.6 KiB gzipped instead of 26.7 KiB).
import kernels from "../build/edgenn.infer.wasm";
import model from "../dist-edge-model/model.enn";
import { createEdgeWorker, type EdgeEnv } from "../src/edgeWorker.js";

const worker = createEdgeWorker({ kernels, model });

export default {
  fetch(request: Request, env: EdgeEnv): Promise<Response> {
    return worker.fetch(request, env);
  },
};
