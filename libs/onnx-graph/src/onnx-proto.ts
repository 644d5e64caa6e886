/**
 * ONNX ModelProto load/save through protobufjs reflection over the official schema (onnx.proto, copied from
 * onnx 1.12). Field names keep the schema's snake_case so code reads like the ONNX spec.
 *
 * Weights are never touched here: external-data initializers stay references (data_location=EXTERNAL), and
 * raw_data buffers are views into the file buffer, so decoding a graph never reads a `.onnx_data` file.
 * Known limit: fields added to onnx.proto after 1.12 are dropped on re-encode (protobufjs keeps no unknown fields).
 */
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as protobuf from 'protobufjs';

export type Int64 = number | { toNumber(): number };

export interface StringStringEntry {
  key: string;
  value: string;
}

export interface TensorShapeDim {
  dim_value?: Int64;
  dim_param?: string;
}

export interface TypeProto {
  tensor_type?: { elem_type?: number; shape?: { dim: TensorShapeDim[] } };
}

export interface ValueInfo {
  name: string;
  type?: TypeProto;
  doc_string?: string;
}

export interface TensorProto {
  name?: string;
  dims: Int64[];
  data_type?: number;
  raw_data?: Uint8Array;
  float_data: number[];
  int32_data: number[];
  int64_data: Int64[];
  double_data: number[];
  uint64_data: Int64[];
  string_data: Uint8Array[];
  data_location?: number;
  external_data: StringStringEntry[];
}

export interface AttributeProto {
  name: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  floats: number[];
  ints: Int64[];
  strings: Uint8Array[];
  tensors: TensorProto[];
  graphs: GraphProto[];
}

export interface NodeProto {
  name?: string;
  op_type: string;
  domain?: string;
  input: string[];
  output: string[];
  attribute: AttributeProto[];
  doc_string?: string;
}

export interface GraphProto {
  name?: string;
  node: NodeProto[];
  initializer: TensorProto[];
  input: ValueInfo[];
  output: ValueInfo[];
  value_info: ValueInfo[];
  doc_string?: string;
}

export interface OperatorSetId {
  domain?: string;
  version?: Int64;
}

export interface ModelProto {
  ir_version?: Int64;
  opset_import: OperatorSetId[];
  producer_name?: string;
  producer_version?: string;
  doc_string?: string;
  graph: GraphProto;
  metadata_props: StringStringEntry[];
}

/** TensorProto.DataType values used by this library. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  BFLOAT16: 16,
} as const;

export const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7 } as const;

/** TensorProto.DataLocation.EXTERNAL */
export const EXTERNAL = 1;

let modelType: protobuf.Type | undefined;

function modelProtoType(): protobuf.Type {
  if (!modelType) {
    const root = new protobuf.Root().loadSync(join(__dirname, 'onnx.proto'), { keepCase: true });
    modelType = root.lookupType('onnx.ModelProto');
  }
  return modelType;
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  const model = modelProtoType().decode(bytes) as unknown as ModelProto;
  if (!model.graph) throw new Error('not an ONNX model: ModelProto has no graph');
  return model;
}

export function encodeModel(model: ModelProto): Uint8Array {
  return modelProtoType()
    .encode(model as unknown as protobuf.Message)
    .finish();
}

/** Reads a graph file only; external data files are left alone. */
export function readModel(path: string): ModelProto {
  return decodeModel(readFileSync(path));
}

/** Writes through a temporary file and a rename, so a reader never sees half a graph. */
export function writeModel(path: string, model: ModelProto): Uint8Array {
  const bytes = encodeModel(model);
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
  return bytes;
}

export function toNumber(v: Int64 | undefined | null): number {
  if (v === undefined || v === null) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

export function sha256Bytes(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Streams the file, so multi-GB graphs hash without being held twice. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** The default-domain opset the graph was exported with (decides e.g. Unsqueeze's axes form). */
export function defaultOpset(model: ModelProto): number {
  const entry = model.opset_import.find((o) => !o.domain || o.domain === 'ai.onnx');
  return entry ? toNumber(entry.version) : 0;
}

export function isExternal(t: TensorProto): boolean {
  return t.data_location === EXTERNAL;
}

export function tensorElemType(v: ValueInfo | undefined): number | undefined {
  return v?.type?.tensor_type?.elem_type;
}

export function tensorDims(v: ValueInfo | undefined): TensorShapeDim[] | undefined {
  return v?.type?.tensor_type?.shape?.dim;
}

/** Encodes any onnx.* message (e.g. 'NodeProto'), used to compare sub-messages byte for byte. */
export function encodeMessage(typeName: string, message: object): Uint8Array {
  modelProtoType();
  return modelType!.root
    .lookupType(`onnx.${typeName}`)
    .encode(message as protobuf.Message)
    .finish();
}
