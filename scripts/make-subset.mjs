#!/usr/bin/env node
// Builds the class-balanced Fashion-MNIST subset bundled in data/fashion-mnist-subset/ from the
// full set. Deterministic: for each split it keeps the first k samples of every class, in the
// full set's own order (which Zalando already shuffled), and writes gzip'd IDX files whose bytes
// depend only on the input (Node's gzip header carries no timestamp or file name).
//
//   node scripts/make-subset.mjs [sourceDir] [outDir]
//
// defaults: sourceDir = ../shared/data/fashion-mnist (beside the repository),
//           outDir = data/fashion-mnist-subset; 6000 train and 1000 test images (600 / 100 per class).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const source = resolve(process.argv[2] ?? join(root, "..", "shared", "data", "fashion-mnist"));
const out = resolve(process.argv[3] ?? join(root, "data", "fashion-mnist-subset"));
const CLASSES = 10;
const SPLITS = [
  { prefix: "train", total: 6000 },
  { prefix: "t10k", total: 1000 },
];

function readIdx(file) {
  let bytes = readFileSync(join(source, file));
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  if (bytes[0] !== 0 || bytes[1] !== 0 || bytes[2] !== 0x08)
    throw new Error(`${file}: not a ubyte IDX file`);
  const ndims = bytes[3];
  const dims = [];
  for (let i = 0; i < ndims; i++) dims.push(bytes.readUInt32BE(4 + 4 * i));
  const header = 4 + 4 * ndims;
  const size = dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== header + size)
    throw new Error(`${file}: ${bytes.length - header} data bytes, dims ${dims} need ${size}`);
  return { dims, data: bytes.subarray(header) };
}

function idxBytes(dims, data) {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, data]);
}

const sha256 = (b) => createHash("sha256").update(b).digest("hex");

mkdirSync(out, { recursive: true });
const summary = [];
for (const { prefix, total } of SPLITS) {
  const images = readIdx(`${prefix}-images-idx3-ubyte.gz`);
  const labels = readIdx(`${prefix}-labels-idx1-ubyte.gz`);
  const [n, rows, cols] = images.dims;
  if (labels.dims[0] !== n) throw new Error(`${prefix}: ${labels.dims[0]} labels, ${n} images`);
  const perClass = total / CLASSES;
  const taken = new Array(CLASSES).fill(0);
  const keep = [];
  for (let i = 0; i < n && keep.length < total; i++) {
    const c = labels.data[i];
    if (taken[c] < perClass) {
      taken[c]++;
      keep.push(i);
    }
  }
  if (keep.length !== total) throw new Error(`${prefix}: only ${keep.length} of ${total} found`);
  const px = rows * cols;
  const outImages = Buffer.alloc(total * px);
  const outLabels = Buffer.alloc(total);
  keep.forEach((src, dst) => {
    images.data.copy(outImages, dst * px, src * px, (src + 1) * px);
    outLabels[dst] = labels.data[src];
  });
  for (const [name, dims, data] of [
    [`${prefix}-images-idx3-ubyte`, [total, rows, cols], outImages],
    [`${prefix}-labels-idx1-ubyte`, [total], outLabels],
  ]) {
    const gz = gzipSync(idxBytes(dims, data), { level: 9 });
    writeFileSync(join(out, `${name}.gz`), gz);
    summary.push(`${sha256(gz)}  ${name}.gz`);
  }
  console.log(
    `${prefix}: ${total} images (${perClass} per class) of ${n}, last source index ${keep.at(-1)}`,
  );
}
// Copied by content (not copyFileSync) so a read-only source does not leave a read-only copy.
writeFileSync(join(out, "LICENSE"), readFileSync(join(source, "LICENSE")));
writeFileSync(join(out, "README.md"), readme(summary));
console.log(`wrote ${out}\n${summary.join("\n")}`);

function readme(checksums) {
  return `# Fashion-MNIST subset (bundled)

A small, class-balanced subset of Fashion-MNIST (Zalando Research, 2017) that ships with edgenn so
the tests, the demo and the examples run without a download: **6000 training images** (600 per
class) and **1000 test images** (100 per class), 28x28 grey-scale, labels 0-9, in the original IDX
format, gzip'd:

| file | content |
| --- | --- |
| train-images-idx3-ubyte.gz | 6000 x 28 x 28 uint8 |
| train-labels-idx1-ubyte.gz | 6000 uint8 labels |
| t10k-images-idx3-ubyte.gz | 1000 x 28 x 28 uint8 |
| t10k-labels-idx1-ubyte.gz | 1000 uint8 labels |

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag,
9 Ankle boot.

## How it was made

\`\`\`sh
node scripts/make-subset.mjs            # reads ../shared/data/fashion-mnist, writes this folder
\`\`\`

The selection is deterministic: for each split, the first 600 (train) or 100 (test) samples of every
class, walking the full set in its published order, and kept in that order. The test images come
from the full set's test split only, so they stay unseen by anything trained on the training split.
Running the script again reproduces these files byte for byte (same Node zlib; the pixels and labels
themselves do not depend on it):

\`\`\`
${checksums.join("\n")}
\`\`\`

Accuracy on this subset is not comparable with published full-set numbers (10x less training data).

## Licence

Fashion-MNIST is © 2017 Zalando SE, released under the MIT (Expat) licence; see LICENSE, copied
from the full set. Source: https://github.com/zalandoresearch/fashion-mnist
`;
}
