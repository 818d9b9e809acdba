#!/usr/bin/env node
// The edgenn command (compiled TypeScript lives in dist/; run `npm run build` first).
import { main } from "../dist/src/cli.js";

process.exitCode = await main(process.argv.slice(2));
