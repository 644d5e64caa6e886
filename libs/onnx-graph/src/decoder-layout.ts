/**
 * What kind of decoder `model prepare` found, in words a person (and a script) can check against what they exported:
 * residual style, sandwich norms, attention op, projection kinds, fused QKV, projection biases, activation type,
 * sliding-window layers. Read from structure only; printed by modctl and kept in the manifest.
 */
import { ELEM_TYPE_NAMES } from './element-types';
import { GraphIndex } from './graph-index';
import { NodeProto, toNumber } from './onnx-proto';

const PROJECTION_OPS = new Set(['MatMul', 'Gemm', 'MatMulNBits', 'FusedMatMul', 'MatMulInteger']);

export interface DecoderLayout {
  /** The residual merges' kinds; `add+skip-norm` when the export mixes plain Adds and fused Skip norms. */
  residual: string;
  /** `o_proj+post-norm`: Gemma 2/3 sandwich norms, the head revision is renormalised before it reaches the stream. */
  attention_output: 'o_proj' | 'o_proj+post-norm';
  mlp_output: 'projection' | 'projection+post-norm';
  attention_op: string;
  o_proj_op: string;
  /** `fused`: one projection makes q, k and v (Phi-3 qkv_proj, genai packed QKV). */
  qkv: 'separate' | 'fused' | string;
  qkv_bias: boolean;
  activation_type: string;
  /** Layers whose fused attention op declares a local window (GroupQueryAttention local_window_size). */
  sliding_window_layers: number[];
}

/** Per-layer facts the layout summarises; several distinct values read as `a+b`. */
export interface LayerFacts {
  layer: number;
  oProj: NodeProto;
  attentionOp: NodeProto;
  attentionBranch: Set<NodeProto>;
  mergeKinds: Array<'add' | 'skip-norm'>;
  postAttentionNorm: boolean;
  postFeedforwardNorm: boolean;
  headElemType: number;
  layerElemType: number;
}

const joined = (values: string[]) => [...new Set(values)].join('+');

function isWeightProjection(index: GraphIndex, n: NodeProto): boolean {
  return PROJECTION_OPS.has(n.op_type) && !index.isConstant(n.input[0]) && index.isConstant(n.input[1]);
}

function hasBias(index: GraphIndex, projection: NodeProto): boolean {
  const uses = index.consumersOf(projection.output[0]);
  return uses.length === 1 && uses[0].node.op_type === 'Add' && uses[0].node.input.some((i) => i !== projection.output[0] && index.isConstant(i));
}

export function describeLayout(index: GraphIndex, layers: LayerFacts[]): DecoderLayout {
  const qkv: string[] = [];
  let qkvBias = false;
  const sliding: number[] = [];
  for (const l of layers) {
    const inputs = [...l.attentionBranch].filter((n) => n !== l.oProj && isWeightProjection(index, n));
    qkv.push(inputs.length === 1 ? 'fused' : inputs.length === 3 ? 'separate' : `${inputs.length} projections`);
    qkvBias ||= inputs.some((p) => hasBias(index, p));
    const window = l.attentionOp.attribute.find((a) => a.name === 'local_window_size');
    if (window?.i !== undefined && toNumber(window.i) > 0) sliding.push(l.layer);
  }
  const typeName = (t: number) => ELEM_TYPE_NAMES[t] ?? `type ${t}`;
  return {
    residual: joined(layers.flatMap((l) => l.mergeKinds)),
    attention_output: joined(layers.map((l) => (l.postAttentionNorm ? 'o_proj+post-norm' : 'o_proj'))) as DecoderLayout['attention_output'],
    mlp_output: joined(layers.map((l) => (l.postFeedforwardNorm ? 'projection+post-norm' : 'projection'))) as DecoderLayout['mlp_output'],
    attention_op: joined(layers.map((l) => l.attentionOp.op_type)),
    o_proj_op: joined(layers.map((l) => l.oProj.op_type)),
    qkv: joined(qkv),
    qkv_bias: qkvBias,
    activation_type: joined(layers.flatMap((l) => [typeName(l.headElemType), typeName(l.layerElemType)])),
    sliding_window_layers: sliding,
  };
}
