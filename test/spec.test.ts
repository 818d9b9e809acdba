import { describe, expect, it } from "vitest";
import { SpecError, parseSpec, resolveSpec, padBefore, windowOut } from "../src/spec.js";
import { cnnSpec, mlpSpec } from "../src/referenceModels.js";

function specError(spec: unknown): SpecError {
  try {
    resolveSpec(spec);
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return e as SpecError;
  }
  throw new Error("expected a SpecError");
}

describe("model spec", () => {
  it("infers the reference models' shapes and parameter counts", () => {
    const mlp = resolveSpec(mlpSpec());
    expect(mlp.outputShape).toEqual([10]);
    // 784*256+256 + 2*256 + 256*128+128 + 2*128 + 128*10+10
    expect(mlp.params).toBe(200960 + 512 + 32896 + 256 + 1290);
    const cnn = resolveSpec(cnnSpec());
    expect(cnn.layers.map((l) => l.outShape)).toEqual([
      [28, 28, 32],
      [28, 28, 32],
      [28, 28, 32],
      [14, 14, 32],
      [14, 14, 64],
      [14, 14, 64],
      [14, 14, 64],
      [7, 7, 64],
      [3136],
      [128],
      [128],
      [128],
      [128],
      [10],
      [10],
    ]);
    expect(cnn.layers[4].params).toBe(3 * 3 * 32 * 64 + 64);
  });

  it("parses the JSON form of the issue's example", () => {
    const m = parseSpec(
      '{"inputShape":[28,28,1],"layers":[{"type":"conv2d","filters":32,"kernelSize":3,"padding":"same"},{"type":"batchNorm"},{"type":"relu"},{"type":"maxPool2d","poolSize":2},{"type":"flatten"},{"type":"dense","units":10},{"type":"softmax"}]}',
    );
    expect(m.outputShape).toEqual([10]);
    expect(m.layers[1].spec).toEqual({
      type: "batchNorm",
      momentum: 0.99,
      epsilon: 1e-3,
      center: true,
      scale: true,
    });
  });

  it("names the layer index and field of an unknown type", () => {
    const e = specError({
      inputShape: [4],
      layers: [{ type: "dense", units: 3 }, { type: "conv3d" }],
    });
    expect(e.layer).toBe(1);
    expect(e.field).toBe("type");
    expect(e.message).toMatch(/layer 1 field "type": unknown layer type "conv3d"/);
  });

  it("rejects impossible shapes, naming layer and field", () => {
    let e = specError({
      inputShape: [4, 4, 1],
      layers: [{ type: "conv2d", filters: 2, kernelSize: 5 }],
    });
    expect(e.layer).toBe(0);
    expect(e.field).toBe("kernelSize");
    e = specError({ inputShape: [4, 4, 1], layers: [{ type: "dense", units: 3 }] });
    expect(e.message).toMatch(/flatten/);
    e = specError({ inputShape: [8], layers: [{ type: "maxPool2d" }] });
    expect(e.layer).toBe(0);
    e = specError({ inputShape: [8], layers: [{ type: "dense", units: 0 }] });
    expect(e.field).toBe("units");
    e = specError({ inputShape: [8], layers: [{ type: "dropout", rate: 1 }] });
    expect(e.field).toBe("rate");
    e = specError({ inputShape: [8], layers: [{ type: "dense", units: 2, activation: "relu" }] });
    expect(e.field).toBe("activation");
    e = specError({ inputShape: [8], layers: [] });
    expect(e.layer).toBe(-1);
    e = specError({ inputShape: [8, 8], layers: [{ type: "relu" }] });
    expect(e.field).toBe("inputShape");
    e = specError({ inputShape: [8], layers: [{ type: "batchNorm", epsilon: 0 }] });
    expect(e.field).toBe("epsilon");
  });

  it("rejects malformed JSON with a clear error", () => {
    expect(() => parseSpec("{not json")).toThrow(/not valid JSON/);
  });

  it("follows TF's same/valid conventions", () => {
    expect(windowOut(28, 3, 1, "same")).toBe(28);
    expect(windowOut(28, 3, 2, "same")).toBe(14);
    expect(windowOut(28, 3, 2, "valid")).toBe(13);
    expect(padBefore(28, 3, 1, "same")).toBe(1);
    // total padding 1 for even input, stride 2, k 2... TF puts the extra row after
    expect(padBefore(5, 4, 1, "same")).toBe(1);
    expect(padBefore(4, 3, 2, "same")).toBe(0);
  });
});
