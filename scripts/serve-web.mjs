// Serves the built demo (dist-web/) on 127.0.0.1 (`npm run web`). Cross-origin isolation headers
// (COOP + COEP) make SharedArrayBuffer available, which the training worker uses to see a cancel
// within one batch and multi-core training (parallel.html) to exchange gradients in shared memory;
// .wasm goes out as application/wasm so it compiles while streaming, and the .gz data files go out
// as plain bytes (no Content-Encoding): the page gunzips them itself.
import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import { extname, join, resolve, sep } from "node:path";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".gz": "application/gzip",
  ".enn": "application/octet-stream",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
};

/**
 * Starts a static server for `root` on host:port (port 0: any free port). Resolves with the
 * server and its URL.
 */
export function startWebServer({
  root = join(ROOT, "dist-web"),
  host = "127.0.0.1",
  port = 0,
  isolated = true,
} = {}) {
  const base = resolve(root);
  // isolated: false leaves COOP/COEP out, so pages get no SharedArrayBuffer (the message-passing
  // fallback of multi-core training is tested that way; EDGENN_NO_ISOLATION=1 from the command line).
  const isolation = isolated
    ? {
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Embedder-Policy": "require-corp",
        "Cross-Origin-Resource-Policy": "same-origin",
      }
    : {};
  const server = createServer((req, res) => {
    const headers = {
      ...isolation,
      "X-Content-Type-Options": "nosniff",
      "Cache-Control": "no-store",
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { ...headers, Allow: "GET, HEAD", "Content-Type": "text/plain" });
      res.end("method not allowed\n");
      return;
    }
    let path;
    try {
      path = decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname);
    } catch {
      res.writeHead(400, { ...headers, "Content-Type": "text/plain" });
      res.end("bad request\n");
      return;
    }
    if (path.endsWith("/")) path += "index.html";
    const file = resolve(base, `.${path}`);
    if (file !== base && !file.startsWith(base + sep)) {
      res.writeHead(403, { ...headers, "Content-Type": "text/plain" });
      res.end("forbidden\n");
      return;
    }
    let size;
    try {
      const st = statSync(file);
      if (!st.isFile()) throw new Error("not a file");
      size = st.size;
    } catch {
      res.writeHead(404, { ...headers, "Content-Type": "text/plain" });
      res.end(`not found: ${path}\n`);
      return;
    }
    res.writeHead(200, {
      ...headers,
      "Content-Type": MIME[extname(file)] ?? "application/octet-stream",
      "Content-Length": size,
    });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((resolvePromise, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address();
      const url = `http://${host}:${typeof address === "object" && address ? address.port : port}/`;
      resolvePromise({ server, url });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const asked = process.env.PORT ?? process.argv[2];
  const port = Number(asked ?? 8080);
  const isolated = process.env.EDGENN_NO_ISOLATION !== "1";
  const { url } = await startWebServer({ port, isolated }).catch((e) => {
    // The default port is taken: any free one will do (an explicit port is an order).
    if (asked === undefined && e.code === "EADDRINUSE")
      return startWebServer({ port: 0, isolated });
    throw e;
  });
  console.log(`edgenn demo: ${url}  (Ctrl+C to stop)`);
}
