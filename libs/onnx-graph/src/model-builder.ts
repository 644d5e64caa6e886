/**
 * Plain-object constructors for ONNX protos, and a small GraphBuilder. The surgery uses the constructors;
 * tests use GraphBuilder to build decoders in code, so no binary fixtures live in git.
 */
import { AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeDim, ValueInfo } from './onnx-proto';

export type AttrValue = number | string | number[] | TensorProto | { float: number } | { floats: number[] };

/** Integers become INT, other numbers FLOAT; wrap as {float} / {floats} to force a float attribute. */
export function makeAttribute(name: string, value: AttrValue): AttributeProto {
  const base = { name, floats: [], ints: [], strings: [], tensors: [], graphs: [] } as AttributeProto;
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { ...base, type: AttributeType.INT, i: value } : { ...base, type: AttributeType.FLOAT, f: value };
  }
  if (typeof value === 'string') return { ...base, type: AttributeType.STRING, s: Buffer.from(value, 'utf8') };
  if (Array.isArray(value)) return { ...base, type: AttributeType.INTS, ints: value };
  if ('float' in value) return { ...base, type: AttributeType.FLOAT, f: value.float };
  if ('floats' in value) return { ...base, type: AttributeType.FLOATS, floats: value.floats };
  return { ...base, type: AttributeType.TENSOR, t: value };
}

export function makeNode(opType: string, inputs: string[], outputs: string[], name: string, attrs: Record<string, AttrValue> = {}, domain?: string): NodeProto {
  const node: NodeProto = {
    name,
    op_type: opType,
    input: inputs,
    output: outputs,
    attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)),
  };
  if (domain) node.domain = domain;
  return node;
}

function emptyTensor(name: string, dims: number[], dataType: number): TensorProto {
  return {
    name,
    dims,
    data_type: dataType,
    float_data: [],
    int32_data: [],
    int64_data: [],
    double_data: [],
    uint64_data: [],
    string_data: [],
    external_data: [],
  };
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return Buffer.from(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
}

export function floatTensor(name: string, dims: number[], values: ArrayLike<number>): TensorProto {
  return { ...emptyTensor(name, dims, DataType.FLOAT), raw_data: bytesOf(Float32Array.from(values)) };
}

/** Same values stored in the legacy repeated float_data field (some exporters still write it). */
export function floatDataTensor(name: string, dims: number[], values: ArrayLike<number>): TensorProto {
  return { ...emptyTensor(name, dims, DataType.FLOAT), float_data: Array.from(Float32Array.from(values)) };
}

export function int64Tensor(name: string, dims: number[], values: number[]): TensorProto {
  return { ...emptyTensor(name, dims, DataType.INT64), raw_data: bytesOf(BigInt64Array.from(values.map(BigInt))) };
}

export function uint8Tensor(name: string, dims: number[], values: Uint8Array): TensorProto {
  return { ...emptyTensor(name, dims, DataType.UINT8), raw_data: Buffer.from(values) };
}

export type Dim = number | string;

export function makeValueInfo(name: string, elemType: number, dims: Dim[] | TensorShapeDim[]): ValueInfo {
  const dim = (dims as Array<Dim | TensorShapeDim>).map((d) =>
    typeof d === 'number' ? { dim_value: d } : typeof d === 'string' ? { dim_param: d } : { ...d },
  );
  return { name, type: { tensor_type: { elem_type: elemType, shape: { dim } } } };
}

export function makeModel(graph: GraphProto, opsets: Record<string, number>, irVersion = 8): ModelProto {
  return {
    ir_version: irVersion,
    producer_name: 'onnx-graph',
    opset_import: Object.entries(opsets).map(([domain, version]) => ({ domain, version })),
    graph,
    metadata_props: [],
  };
}

/** Deterministic uniform numbers in [-scale, scale): tests need reproducible random weights. */
export function seededRandom(seed: number): (scale?: number) => number {
  let s = seed >>> 0 || 1;
  return (scale = 1) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return ((s / 0x100000000) * 2 - 1) * scale;
  };
}

/** Builds a graph in code; `node` returns the output names so calls can be nested like expressions. */
export class GraphBuilder {
  readonly graph: GraphProto = { name: 'graph', node: [], initializer: [], input: [], output: [], value_info: [] };
  private counter = 0;

  input(name: string, elemType: number, dims: Dim[]): string {
    this.graph.input.push(makeValueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: number, dims: Dim[]): string {
    this.graph.output.push(makeValueInfo(name, elemType, dims));
    return name;
  }

  init(tensor: TensorProto): string {
    this.graph.initializer.push(tensor);
    return tensor.name!;
  }

  floats(name: string, dims: number[], values: ArrayLike<number>): string {
    return this.init(floatTensor(name, dims, values));
  }

  ints(name: string, dims: number[], values: number[]): string {
    return this.init(int64Tensor(name, dims, values));
  }

  /** A fresh initializer name for constants the caller does not care to name. */
  constName(prefix = 'const'): string {
    return `${prefix}_${this.counter++}`;
  }

  node(
    opType: string,
    inputs: string[],
    name: string,
    opts: { attrs?: Record<string, AttrValue>; outputs?: number | string[]; domain?: string } = {},
  ): string[] {
    const outputs = Array.isArray(opts.outputs) ? opts.outputs : Array.from({ length: opts.outputs ?? 1 }, (_, i) => `${name}_output_${i}`);
    this.graph.node.push(makeNode(opType, inputs, outputs, name, opts.attrs, opts.domain));
    return outputs;
  }

  /** Single-output shorthand. */
  op(opType: string, inputs: string[], name: string, attrs?: Record<string, AttrValue>, domain?: string): string {
    return this.node(opType, inputs, name, { attrs, domain })[0];
  }

  model(opsets: Record<string, number> = { '': 17 }): ModelProto {
    return makeModel(this.graph, opsets);
  }
}
