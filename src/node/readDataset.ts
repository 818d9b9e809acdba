// Node-only: reads the IDX files of an MNIST-style data set from a folder, gzip'd or raw.
import { existsSync, readFileSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { decodeIdx, type IdxArray } from "../idx.js";
import { idxToDataset, type Dataset } from "../dataset.js";

/** File names (without .gz) of the four IDX files of MNIST and Fashion-MNIST. */
export const IDX_FILES = {
  trainImages: "train-images-idx3-ubyte",
  trainLabels: "train-labels-idx1-ubyte",
  testImages: "t10k-images-idx3-ubyte",
  testLabels: "t10k-labels-idx1-ubyte",
} as const;

/** A data set file that is in none of the places it was looked for. */
export class DatasetFileNotFoundError extends Error {
  constructor(
    readonly dir: string,
    readonly tried: string[],
  ) {
    super(
      `data set file not found in ${dir}: looked for ${tried.join(" and ")}. ` +
        `Point to a folder holding the MNIST-style IDX files (${Object.values(IDX_FILES).join(", ")}; gzip'd or raw).`,
    );
    this.name = "DatasetFileNotFoundError";
  }
}

/** Reads and parses one IDX file by base name, preferring the raw file when both exist. */
export async function readIdxFile(dir: string, base: string): Promise<IdxArray> {
  const tried = [base, `${base}.gz`];
  const file = tried.find((f) => existsSync(join(dir, f)));
  if (!file) throw new DatasetFileNotFoundError(resolve(dir), tried);
  const path = join(dir, file);
  // decodeIdx sniffs the gzip magic itself, so a mis-named file still reads correctly.
  return decodeIdx(await readFile(path), path);
}

/** Reads the train and t10k (test) splits of an MNIST-style data set folder. */
export async function readIdxDataset(dir: string): Promise<{ train: Dataset; test: Dataset }> {
  const [trainImages, trainLabels, testImages, testLabels] = await Promise.all(
    [IDX_FILES.trainImages, IDX_FILES.trainLabels, IDX_FILES.testImages, IDX_FILES.testLabels].map(
      (base) => readIdxFile(dir, base),
    ),
  );
  return {
    train: idxToDataset(trainImages, trainLabels, "train"),
    test: idxToDataset(testImages, testLabels, "t10k"),
  };
}

let cachedRoot: string | undefined;

/** The folder of edgenn's package.json, found from this file whether it runs from src/ or dist/src/. */
export function packageRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name === "edgenn")
          return (cachedRoot = dir);
      } catch {
        // An unreadable package.json belongs to something else; keep walking up.
      }
    }
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error(
        `edgenn: package root not found above ${fileURLToPath(import.meta.url)} (no package.json named "edgenn")`,
      );
    dir = parent;
  }
}

/** The Fashion-MNIST subset bundled with the package (6000 train, 1000 test, class-balanced). */
export function defaultDataDir(): string {
  return join(packageRoot(), "data", "fashion-mnist-subset");
}

/** The full Fashion-MNIST set beside the repository (../shared/data/fashion-mnist), if present. */
export function fullDataDir(): string | undefined {
  const dir = resolve(packageRoot(), "..", "shared", "data", "fashion-mnist");
  return existsSync(dir) && statSync(dir).isDirectory() ? dir : undefined;
}
