// The ONNX graph of an exported (folded) edgenn model, for the ONNX Runtime Web baseline: the same
// ops with the same f32 weights, so the three runtimes compute the same function.
//
// Layout: edgenn is NHWC throughout; ONNX Conv/MaxPool are NCHW. The graph transposes the image
// once at its start (NHWC -> NCHW), keeps NCHW through convs and pools (kernels HWIO -> OIHW), and
// transposes back to NHWC just before a Flatten, so the flattened feature order is ours (channel
// fastest) and the Dense kernels stay byte-identical. Dense is Gemm(x, W[In, Units], b), our own
// kernel layout. Fused activations become their own node after the Gemm/Conv (ONNX Runtime fuses
// Conv+Relu itself at graph optimisation).
import { createRequire } from "node:module";
import { dirname } from "node:path";
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-web";
import type { EnnContent, EnnOp } from "../src/ennFormat.js";

const { onnx } = onnxProto;
type Layout = "nhwc" | "nchw" | "flat";

/** Opset 13: Softmax over the last axis, Gemm/Conv/MaxPool as used here. */
export const ONNX_OPSET = 13;

class GraphBuilder {
  readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  private n = 0;

  name(prefix: string): string {
    return `${prefix}_${this.n++}`;
  }

  constant(prefix: string, dims: number[], data: Float32Array): string {
    const name = this.name(prefix);
    const raw = new Uint8Array(
      data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
    );
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dims,
        dataType: onnx.TensorProto.DataType.FLOAT,
        rawData: raw,
      }),
    );
    return name;
  }

  /** Number arrays are INTS, numbers INT, except `alpha`, ONNX's one FLOAT attribute used here. */
  node(opType: string, inputs: string[], attrs: Record<string, number | number[]> = {}): string {
    const out = this.name(opType.toLowerCase());
    const attribute = Object.entries(attrs).map(([name, v]) =>
      Array.isArray(v)
        ? onnx.AttributeProto.create({
            name,
            type: onnx.AttributeProto.AttributeType.INTS,
            ints: v,
          })
        : Number.isInteger(v) && name !== "alpha"
          ? onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: v })
          : onnx.AttributeProto.create({
              name,
              type: onnx.AttributeProto.AttributeType.FLOAT,
              f: v,
            }),
    );
    this.nodes.push(onnx.NodeProto.create({ opType, input: inputs, output: [out], attribute }));
    return out;
  }
}

function valueInfo(name: string, shape: (number | string)[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: onnx.TensorShapeProto.create({
          dim: shape.map((d) =>
            typeof d === "string"
              ? onnx.TensorShapeProto.Dimension.create({ dimParam: d })
              : onnx.TensorShapeProto.Dimension.create({ dimValue: d }),
          ),
        }),
      }),
    }),
  });
}

/** HWIO [KH, KW, C, F] -> OIHW [F, C, KH, KW]. */
function hwioToOihw(w: Float32Array, KH: number, KW: number, C: number, F: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let kh = 0; kh < KH; kh++)
    for (let kw = 0; kw < KW; kw++)
      for (let c = 0; c < C; c++)
        for (let f = 0; f < F; f++)
          out[((f * C + c) * KH + kh) * KW + kw] = w[((kh * KW + kw) * C + c) * F + f];
  return out;
}

function activation(g: GraphBuilder, x: string, a: string, alpha?: number): string {
  switch (a) {
    case "linear":
      return x;
    case "relu":
      return g.node("Relu", [x]);
    case "leakyRelu":
      return g.node("LeakyRelu", [x], { alpha: alpha! });
    case "elu":
      return g.node("Elu", [x], { alpha: alpha! });
    case "tanh":
      return g.node("Tanh", [x]);
    case "sigmoid":
      return g.node("Sigmoid", [x]);
    case "softmax":
      return g.node("Softmax", [x], { axis: -1 });
    default:
      throw new Error(`onnxGraph: activation ${a} not mapped`);
  }
}

/** The baseline compares f32 graphs: an int8 export has no ONNX twin here. */
function f32Tensor(content: EnnContent, i: number): Float32Array {
  const d = content.tensors[i].data;
  if (!(d instanceof Float32Array))
    throw new Error(
      `onnxGraph: tensor ${content.tensors[i].name} is not f32 (export without int8)`,
    );
  return d;
}

/**
 * Builds the serialized ONNX model (input "x": [N, ...inputShape], output "y": [N,
 * ...outputShape], both in edgenn's NHWC layout) of an exported model's op list.
 */
export function buildOnnxModel(content: EnnContent): Uint8Array {
  const g = new GraphBuilder();
  let x = "x";
  // Widened on purpose: the transposes below change it inside closures.
  let layout = (content.inputShape.length === 3 ? "nhwc" : "flat") as Layout;
  const toNchw = () => {
    if (layout === "nhwc") {
      x = g.node("Transpose", [x], { perm: [0, 3, 1, 2] });
      layout = "nchw";
    }
  };
  const toNhwc = () => {
    if (layout === "nchw") {
      x = g.node("Transpose", [x], { perm: [0, 2, 3, 1] });
      layout = "nhwc";
    }
  };
  for (const op of content.ops as EnnOp[]) {
    switch (op.op) {
      case "dense": {
        if (layout !== "flat")
          throw new Error("onnxGraph: dense needs a flat input (flatten first)");
        const w = f32Tensor(content, op.kernel);
        const In = w.length / op.units;
        const inputs = [x, g.constant("W", [In, op.units], w)];
        if (op.bias !== undefined)
          inputs.push(g.constant("b", [op.units], f32Tensor(content, op.bias)));
        x = activation(g, g.node("Gemm", inputs), op.activation, op.alpha);
        break;
      }
      case "conv2d": {
        toNchw();
        const [KH, KW] = op.kernelSize;
        const w = f32Tensor(content, op.kernel);
        const C = w.length / (KH * KW * op.filters);
        const inputs = [
          x,
          g.constant("W", [op.filters, C, KH, KW], hwioToOihw(w, KH, KW, C, op.filters)),
        ];
        if (op.bias !== undefined)
          inputs.push(g.constant("b", [op.filters], f32Tensor(content, op.bias)));
        const [t, l, b, r] = op.pad;
        const conv = g.node("Conv", inputs, {
          kernel_shape: [KH, KW],
          strides: op.strides,
          pads: [t, l, b, r],
        });
        x = activation(g, conv, op.activation, op.alpha);
        break;
      }
      case "scaleShift": {
        // (x - center) * scale + shift per channel: the last axis in NHWC/flat, axis 1 in NCHW.
        const C = op.outShape[op.outShape.length - 1];
        const dims = layout === "nchw" ? [C, 1, 1] : [C];
        if (op.center !== undefined)
          x = g.node("Sub", [x, g.constant("center", dims, f32Tensor(content, op.center))]);
        x = g.node("Mul", [x, g.constant("scale", dims, f32Tensor(content, op.scale))]);
        x = g.node("Add", [x, g.constant("shift", dims, f32Tensor(content, op.shift))]);
        break;
      }
      case "relu":
      case "leakyRelu":
      case "elu":
      case "tanh":
      case "sigmoid":
        x = activation(g, x, op.op, op.alpha);
        break;
      case "softmax":
        // Softmax runs over the channel axis, the last one in our layout.
        toNhwc();
        x = activation(g, x, "softmax");
        break;
      case "maxPool2d":
      case "avgPool2d": {
        toNchw();
        const [t, l, b, r] = op.pad;
        x = g.node(op.op === "maxPool2d" ? "MaxPool" : "AveragePool", [x], {
          kernel_shape: op.poolSize,
          strides: op.strides,
          pads: [t, l, b, r],
        });
        break;
      }
      case "globalAvgPool2d":
        toNchw();
        x = g.node("Flatten", [g.node("GlobalAveragePool", [x])], { axis: 1 });
        layout = "flat";
        break;
      case "flatten":
        if (layout !== "flat") {
          toNhwc();
          x = g.node("Flatten", [x], { axis: 1 });
          layout = "flat";
        }
        break;
    }
  }
  toNhwc();
  // Name the graph output "y" (Identity is removed by ORT's graph optimiser).
  g.nodes.push(onnx.NodeProto.create({ opType: "Identity", input: [x], output: ["y"] }));
  const model = onnx.ModelProto.create({
    irVersion: 7,
    producerName: "edgenn bench",
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: ONNX_OPSET })],
    graph: onnx.GraphProto.create({
      name: "edgenn",
      node: g.nodes,
      initializer: g.initializers,
      input: [valueInfo("x", ["N", ...content.inputShape])],
      output: [valueInfo("y", ["N", ...content.outputShape])],
    }),
  });
  return onnx.ModelProto.encode(model).finish();
}

// ---- ONNX Runtime Web --------------------------------------------------------------------------

let ortReady = false;

/** ORT's wasm EP, one thread, SIMD; its .wasm/.mjs from node_modules (no network). */
export function useOrt(): typeof ort {
  if (!ortReady) {
    const dist = dirname(createRequire(import.meta.url).resolve("onnxruntime-web"));
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.simd = true;
    ort.env.wasm.wasmPaths = dist + "/";
    ort.env.logLevel = "error";
    ortReady = true;
  }
  return ort;
}

export async function ortSession(onnxBytes: Uint8Array): Promise<ort.InferenceSession> {
  useOrt();
  return ort.InferenceSession.create(onnxBytes, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
}

export async function ortPredict(
  s: ort.InferenceSession,
  x: Float32Array,
  shape: number[],
): Promise<Float32Array> {
  const out = await s.run({ x: new ort.Tensor("float32", x, shape) });
  return out.y.data as Float32Array;
}
