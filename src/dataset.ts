// In-memory labelled data sets: what training and evaluation consume. Platform-neutral.
import { IdxFormatError, type IdxArray } from "./idx.js";

export interface Dataset {
  /** Samples, row-major: x[i * sampleSize .. (i + 1) * sampleSize) is sample i, values in [0, 1]. */
  x: Float32Array; // (count, ...shape)
  /** Class index of each sample, 0 <= y[i] < classes. */
  y: Int32Array; // (count)
  count: number;
  /** Shape of one sample without the batch axis, e.g. [28, 28, 1] for images or [784] when flat. */
  shape: number[];
  classes: number;
}

/** Exact float32 of b / 255 for every byte, so conversion is one table lookup per pixel. */
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, b) => b / 255);

/** Header size of a ubyte IDX file with this many dimensions (for byte offsets in errors). */
function idxHeaderBytes(a: IdxArray): number {
  return 4 + 4 * a.dims.length;
}

/**
 * Pairs an IDX image file ([N, rows, cols]) with its label file ([N]) into a Dataset of
 * [rows, cols, 1] images scaled to [0, 1]. Errors name each file by its IdxArray.name, else by
 * `name` (e.g. "train images", "train labels").
 */
export function idxToDataset(
  images: IdxArray,
  labels: IdxArray,
  name = "dataset",
  classes = 10,
): Dataset {
  const imagesFile = images.name ?? `${name} images`;
  const labelsFile = labels.name ?? `${name} labels`;
  if (!Number.isInteger(classes) || classes < 1 || classes > 256)
    throw new RangeError(`idxToDataset: classes must be an integer from 1 to 256, got ${classes}`);
  if (images.dims.length !== 3)
    throw new IdxFormatError(
      imagesFile,
      `expected 3 dimensions [count, rows, cols], got [${images.dims.join(", ")}]`,
      3,
      images.decompressed,
    );
  if (labels.dims.length !== 1)
    throw new IdxFormatError(
      labelsFile,
      `expected 1 dimension [count], got [${labels.dims.join(", ")}]`,
      3,
      labels.decompressed,
    );
  const [n, rows, cols] = images.dims;
  if (labels.dims[0] !== n)
    throw new IdxFormatError(
      labelsFile,
      `${labels.dims[0]} labels for the ${n} images of ${imagesFile}; the two files must hold the same number of samples`,
      4,
      labels.decompressed,
    );
  if (n === 0) throw new IdxFormatError(imagesFile, "holds no samples", 4, images.decompressed);
  if (rows === 0 || cols === 0)
    throw new IdxFormatError(
      imagesFile,
      `images are ${rows}x${cols}, which is empty`,
      8,
      images.decompressed,
    );
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const label = labels.data[i];
    if (label >= classes)
      throw new IdxFormatError(
        labelsFile,
        `label ${label} of sample ${i} is out of range: expected 0..${classes - 1}`,
        idxHeaderBytes(labels) + i,
        labels.decompressed,
      );
    y[i] = label;
  }
  const pixels = images.data;
  const x = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) x[i] = BYTE_TO_UNIT[pixels[i]];
  return { x, y, count: n, shape: [rows, cols, 1], classes };
}

/** Elements per sample of a shape. */
export function sampleSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The same samples seen as flat vectors ([28, 28, 1] -> [784]); shares the x and y buffers. */
export function flattenShape(ds: Dataset): Dataset {
  return { ...ds, shape: [sampleSize(ds.shape)] };
}

/** Up to n samples from `start` on (fewer when the data set ends first), as views: no copy. */
export function subsetDataset(ds: Dataset, n: number, start = 0): Dataset {
  if (!Number.isInteger(n) || !Number.isInteger(start) || n < 0 || start < 0)
    throw new RangeError(
      `subsetDataset: n and start must be non-negative integers, got n=${n}, start=${start}`,
    );
  if (start > ds.count)
    throw new RangeError(`subsetDataset: start ${start} is past the end (${ds.count} samples)`);
  n = Math.min(n, ds.count - start);
  const size = sampleSize(ds.shape);
  return {
    x: ds.x.subarray(start * size, (start + n) * size),
    y: ds.y.subarray(start, start + n),
    count: n,
    shape: [...ds.shape],
    classes: ds.classes,
  };
}

/** Number of samples of each class (index = class). */
export function classCounts(ds: Dataset): number[] {
  const counts = new Array<number>(ds.classes).fill(0);
  for (let i = 0; i < ds.count; i++) counts[ds.y[i]]++;
  return counts;
}
