#!/usr/bin/env node
// Prints what `wrangler deploy --dry-run --outdir dist-edge` would upload, raw and gzipped (the
// size Cloudflare's Worker limits count), file by file. Source maps and wrangler's README are not
// uploaded and are left out.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const dir = process.argv[2] ?? "dist-edge";
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const rows = readdirSync(dir)
  .filter((f) => !f.endsWith(".map") && f !== "README.md")
  .map((f) => {
    const b = readFileSync(join(dir, f));
    return { f, raw: b.length, gz: gzipSync(b, { level: 9 }).length };
  });
const w = Math.max(...rows.map((r) => r.f.length), 5);
for (const r of rows)
  console.log(`${r.f.padEnd(w)}  ${kib(r.raw).padStart(12)}  gzip ${kib(r.gz).padStart(10)}`);
const raw = rows.reduce((a, r) => a + r.raw, 0);
const gz = rows.reduce((a, r) => a + r.gz, 0);
console.log(`${"total".padEnd(w)}  ${kib(raw).padStart(12)}  gzip ${kib(gz).padStart(10)}`);
