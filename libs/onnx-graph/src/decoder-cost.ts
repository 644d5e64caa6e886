/**
 * What one decoded token must cost at least, read from the graph: the bytes of its weights (each read once per
 * step, whatever the batch) and the FLOPs of its weight matrix products (per row). The runtime benchmark turns
 * these into the memory-bandwidth and compute bounds of decode (a roofline), so a tokens/s figure comes with how far
 * it is from what the machine allows.
 */
import { GraphIndex } from './graph-index';
import { DataType, type GraphProto, type ModelProto, type TensorProto } from './onnx-proto';
import { elementCount } from './tensor-data';

const BYTES_PER_ELEMENT: Record<number, number> = {
  [DataType.FLOAT]: 4,
  [DataType.UINT8]: 1,
  [DataType.INT8]: 1,
  [DataType.INT32]: 4,
  [DataType.INT64]: 8,
  [DataType.BOOL]: 1,
  [DataType.FLOAT16]: 2,
  [DataType.DOUBLE]: 8,
  [DataType.BFLOAT16]: 2,
};

export interface DecoderCost {
  /** Bytes of every initializer (weights, norms) and Constant node: what a decode step reads at least once. */
  weightBytes: number;
  /** 2 x the elements of each weight matrix a MatMul or Gemm multiplies by: FLOPs per row (token) of a step. */
  matmulFlopsPerToken: number;
  /** Weight matrix products counted, and activation x activation ones (attention) left to `attentionFlops`. */
  weightMatmuls: number;
  activationMatmuls: number;
}

/** Ops a weight passes through unchanged in size on its way to a MatMul (tied embeddings, fp16 storage). */
const PASS_THROUGH = new Set(['Transpose', 'Cast', 'Identity', 'DequantizeLinear']);

function tensorBytes(t: TensorProto): number {
  return elementCount(t) * (BYTES_PER_ELEMENT[t.data_type ?? DataType.FLOAT] ?? 4);
}

/** The initializer `name` is, or comes from through size-preserving ops; undefined for an activation. */
function weightOf(index: GraphIndex, inits: Map<string, TensorProto>, name: string): TensorProto | undefined {
  for (let hops = 0; hops < 4; hops++) {
    const found = inits.get(name);
    if (found) return found;
    const producer = index.producerOf(name);
    if (producer?.op_type === 'Constant') return producer.attribute.find((a) => a.name === 'value')?.t ?? undefined;
    if (!producer || !PASS_THROUGH.has(producer.op_type)) return undefined;
    name = producer.input[0];
  }
  return undefined;
}

function graphCost(graph: GraphProto, outer: Map<string, TensorProto>): Omit<DecoderCost, 'weightBytes'> {
  const inits = new Map(outer);
  for (const t of graph.initializer) if (t.name) inits.set(t.name, t);
  const index = new GraphIndex(graph);
  const cost = { matmulFlopsPerToken: 0, weightMatmuls: 0, activationMatmuls: 0 };
  for (const node of graph.node) {
    if (node.op_type === 'MatMul' || node.op_type === 'Gemm') {
      const weight = weightOf(index, inits, node.input[1]);
      if (weight) {
        cost.matmulFlopsPerToken += 2 * elementCount(weight);
        cost.weightMatmuls++;
      } else cost.activationMatmuls++;
    }
    // A merged decoder's If: both branches run the same layers (with and without past); one of them runs per call.
    const branches = node.attribute.filter((a) => a.g).map((a) => graphCost(a.g!, inits));
    if (branches.length) {
      const most = branches.reduce((a, b) => (b.matmulFlopsPerToken > a.matmulFlopsPerToken ? b : a));
      cost.matmulFlopsPerToken += most.matmulFlopsPerToken;
      cost.weightMatmuls += most.weightMatmuls;
      cost.activationMatmuls += most.activationMatmuls;
    }
  }
  return cost;
}

function allTensors(graph: GraphProto): TensorProto[] {
  const constants = graph.node.filter((n) => n.op_type === 'Constant').flatMap((n) => n.attribute.filter((a) => a.name === 'value' && a.t).map((a) => a.t!));
  return [...graph.initializer, ...constants, ...graph.node.flatMap((n) => n.attribute.filter((a) => a.g).flatMap((a) => allTensors(a.g!)))];
}

export function decoderCost(model: ModelProto): DecoderCost {
  const weightBytes = allTensors(model.graph).reduce((n, t) => n + tensorBytes(t), 0);
  return { weightBytes, ...graphCost(model.graph, new Map()) };
}

/**
 * FLOPs of attention for one new token over `context` positions: scores (q.k) and the weighted sum of values,
 * 2 x 2 x heads x headDim x context per layer.
 */
export function attentionFlopsPerToken(config: { layers: number; heads: number; headDim: number }, context: number): number {
  return 4 * config.layers * config.heads * config.headDim * context;
}

/** Bytes of one row's key/value cache over `context` positions (read once per step). */
export function kvCacheBytes(config: { layers: number; kvHeads: number; headDim: number }, context: number, bytesPerElement = 4): number {
  return 2 * config.layers * config.kvHeads * config.headDim * context * bytesPerElement;
}
