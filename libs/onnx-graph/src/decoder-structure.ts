/**
 * Finds, per decoder layer, where the revision goes: the o_proj MatMul (its activation input is the concatenated
 * per-head attention output) and the residual merge that ends the layer.
 *
 * The search follows the residual stream, not node names, so it works for torch.onnx / optimum exports (plain Add
 * residuals) and for onnxruntime-genai exports (residual Add fused into Skip*LayerNormalization, output 3 = sum):
 * starting at the embeddings, each residual merge is the node that adds the stream R to a branch whose values
 * derive from R. A layer is two merges: attention (the branch holds the attention op) then MLP.
 * Names only break ties between candidates and make messages readable.
 */
import { existsSync, readFileSync } from 'node:fs';
import { DecoderLayout, describeLayout } from './decoder-layout';
import { ElementTypes } from './element-types';
import { GraphIndex } from './graph-index';
import { DataType, ModelProto, NodeProto, tensorDims, tensorElemType, toNumber } from './onnx-proto';
import { NormStep, normStep } from './post-norm';
import { DecoderStructureError } from './structure-error';

export { DecoderStructureError };

/** Fused residual+norm ops whose output 3 is the residual sum input + skip (+ bias). */
const SKIP_NORM_OPS = new Set(['SkipSimplifiedLayerNormalization', 'SkipLayerNormalization']);
const ATTENTION_OPS = new Set([
  'Softmax',
  'GroupQueryAttention',
  'MultiHeadAttention',
  'Attention',
  'PackedMultiHeadAttention',
  'PackedAttention',
  'SparseAttention',
  'PagedAttention',
]);
const FUSED_ATTENTION_OPS = new Set([...ATTENTION_OPS].filter((op) => op !== 'Softmax'));
const PROJECTION_OPS = new Set(['MatMul', 'Gemm', 'MatMulNBits', 'FusedMatMul', 'MatMulInteger']);
/**
 * Between o_proj and the merge may sit value-preserving nodes, a bias Add, a constant scale Mul and normalisations
 * (Gemma's post-attention norm): all act on the whole o_proj output, so a head revision still enters through o_proj.
 */
const PASS_THROUGH_OPS = new Set(['Identity', 'Cast']);
/** Hops from a merge back to o_proj: a decomposed, up-cast post-norm with its scale is about eight. */
const MAX_HOPS_TO_O_PROJ = 32;
/** Elementwise ops that may sit between the embedding lookup and the first layer (Gemma's sqrt(hidden), fp32 I/O casts). */
const STREAM_START_OPS = new Set(['Cast', 'Mul', 'Div', 'Identity']);

export interface ResidualMerge {
  kind: 'add' | 'skip-norm';
  node: NodeProto;
  /** The stream before the merge. */
  residualInput: string;
  /** The operand carrying the branch output (attention or MLP). */
  branchInput: string;
  branchIndex: number;
  /** The stream after the merge; undefined when a fused node does not emit its sum (a final norm often doesn't). */
  sumOutput: string | undefined;
  /** Nodes whose values flow into the branch operand from this merge's residual input. */
  branchNodes: Set<NodeProto>;
}

export interface LayerPoints {
  layer: number;
  oProj: NodeProto;
  /** o_proj's activation input: [batch, seq, heads*head_dim]. */
  oProjInput: string;
  /** Element type at o_proj's input (the head revision's type) and of the stream after the layer (the layer revision's). */
  headElemType: number;
  layerElemType: number;
  /** Sandwich norms (Gemma 2/3): the norm on o_proj's output before the attention merge, and on the MLP's output. */
  postAttentionNorm?: NormStep;
  postFeedforwardNorm?: NormStep;
  /** The op that makes the attention branch an attention branch (Softmax, GroupQueryAttention...). */
  attentionOp: NodeProto;
  attention: ResidualMerge;
  /** The merge that ends the layer. */
  mlp: ResidualMerge;
}

export interface DecoderStructure {
  residualStyle: 'add' | 'skip-norm';
  /** Tensor element types, for casts at the insertion points. */
  types: ElementTypes;
  layout: DecoderLayout;
  /** The tensor the residual stream starts from (inputs_embeds, or the token embedding Gather). */
  embeddings: string;
  /** Element type of the residual stream (FLOAT, FLOAT16...). */
  elemType: number;
  batchDim: string;
  seqDim: string;
  layers: LayerPoints[];
  hidden: number;
  heads: number;
  headDim: number;
  /** Node → decoder layer; nodes shared by several layers (masks, rotary tables) are absent. */
  nodeLayer: Map<NodeProto, number>;
}

export interface TextConfig {
  model_type?: string;
  num_hidden_layers?: number;
  hidden_size?: number;
  num_attention_heads?: number;
  num_key_value_heads?: number;
  head_dim?: number;
}

/** text_config for VLM packs (Idefics3/SmolVLM), the top level for text-only packs. */
export function readTextConfig(packDir: string): TextConfig | undefined {
  const path = `${packDir}/config.json`;
  if (!existsSync(path)) return undefined;
  const config = JSON.parse(readFileSync(path, 'utf8'));
  return (config.text_config ?? config) as TextConfig;
}

function label(node: NodeProto): string {
  return node.name ? `'${node.name}' (${node.op_type})` : `unnamed ${node.op_type} -> ${node.output[0]}`;
}

function attrInt(node: NodeProto, name: string): number | undefined {
  const a = node.attribute.find((x) => x.name === name);
  return a && a.i !== undefined ? toNumber(a.i) : undefined;
}

/**
 * Follows the embeddings through elementwise adapters that are their only value consumer: Gemma scales the lookup
 * by sqrt(hidden), fp16 bodies behind fp32 I/O cast first. The first layer reads the adapter's output.
 */
function throughAdapters(index: GraphIndex, tensor: string): string {
  for (let hops = 0; hops < 8; hops++) {
    const uses = index.consumersOf(tensor).filter((u) => u.node.op_type !== 'Shape' && u.node.op_type !== 'Size');
    if (uses.length !== 1) return tensor;
    const n = uses[0].node;
    if (!STREAM_START_OPS.has(n.op_type)) return tensor;
    const other = n.input[1 - uses[0].index];
    const scale = (n.op_type === 'Mul' || uses[0].index === 0) && other !== undefined && index.isConstant(other);
    if (n.op_type !== 'Cast' && n.op_type !== 'Identity' && !scale) return tensor;
    tensor = n.output[0];
  }
  return tensor;
}

function findEmbeddings(index: GraphIndex): { tensor: string; dimsOf: string; lookup?: NodeProto } {
  if (index.graphInputs.has('inputs_embeds')) return { tensor: throughAdapters(index, 'inputs_embeds'), dimsOf: 'inputs_embeds' };
  // Text-only decoders embed input_ids themselves: the stream starts at the lookup in the embedding table
  // (GatherBlockQuantized for int4 onnxruntime-genai exports).
  for (const use of index.consumersOf('input_ids')) {
    const n = use.node;
    const lookup = (n.op_type === 'Gather' && use.index === 1) || (n.op_type === 'GatherBlockQuantized' && use.index === 1);
    if (lookup && n.input.every((i, k) => k === use.index || !i || index.isConstant(i))) {
      return { tensor: throughAdapters(index, n.output[0]), dimsOf: 'input_ids', lookup: n };
    }
  }
  throw new DecoderStructureError("no residual stream start: the graph has no 'inputs_embeds' input and no embedding Gather over 'input_ids'");
}

class StructureFinder {
  readonly index: GraphIndex;

  constructor(model: ModelProto) {
    this.index = new GraphIndex(model.graph);
  }

  /** The merge consuming the stream R, or undefined at the end of the stack (final norm). */
  findMerge(residual: string, layerHint: number): ResidualMerge | undefined {
    const producer = this.index.producerOf(residual);
    const stopNodes = new Set<NodeProto>(producer ? [producer] : []);
    const candidates: ResidualMerge[] = [];
    for (const use of this.index.consumersOf(residual)) {
      const n = use.node;
      const isAdd = n.op_type === 'Add' && (!n.domain || n.domain === 'ai.onnx') && n.input.length === 2;
      const isSkip = SKIP_NORM_OPS.has(n.op_type);
      if ((!isAdd && !isSkip) || use.index > 1) continue;
      const branchIndex = 1 - use.index;
      const branchInput = n.input[branchIndex];
      if (!branchInput || branchInput === residual || this.index.isConstant(branchInput)) continue;
      const { nodes, reachedStop } = this.index.valueAncestry(branchInput, new Set([residual]), stopNodes);
      if (!reachedStop) continue;
      candidates.push({
        kind: isAdd ? 'add' : 'skip-norm',
        node: n,
        residualInput: residual,
        branchInput,
        branchIndex,
        sumOutput: isAdd ? n.output[0] : n.output[3] || undefined,
        branchNodes: nodes,
      });
    }
    if (candidates.length <= 1) return candidates[0];
    const hinted = candidates.filter((c) => c.node.name?.includes(`layers.${layerHint}/`));
    if (hinted.length === 1) return hinted[0];
    throw new DecoderStructureError(`ambiguous residual merge after '${residual}': ${candidates.map((c) => label(c.node)).join(', ')}`, layerHint);
  }

  /**
   * Walks back from a branch operand to the projection that produced it, through casts, a bias Add, a constant
   * scale and normalisations (the sandwich post-norm). Stops at the projection or at the first node that is none
   * of these; `norm` is the normalisation passed, if any.
   */
  walkBack(branchInput: string): { projection?: NodeProto; norm?: NormStep; stoppedAt?: NodeProto } {
    let tensor = branchInput;
    let norm: NormStep | undefined;
    for (let hops = 0; hops < MAX_HOPS_TO_O_PROJ; hops++) {
      const node = this.index.producerOf(tensor);
      if (!node) return { norm };
      if (PROJECTION_OPS.has(node.op_type)) return { projection: node, norm };
      if (PASS_THROUGH_OPS.has(node.op_type)) {
        tensor = node.input[0];
        continue;
      }
      if ((node.op_type === 'Add' || node.op_type === 'Mul') && node.input.length === 2) {
        const [a, b] = node.input;
        const aConst = this.index.isConstant(a);
        if (aConst !== this.index.isConstant(b)) {
          tensor = aConst ? b : a;
          continue;
        }
      }
      const step = normStep(this.index, node);
      if (!step) return { norm, stoppedAt: node };
      norm ??= step;
      tensor = step.input;
    }
    return { norm };
  }

  findOProj(merge: ResidualMerge, layer: number): { oProj: NodeProto; postNorm?: NormStep } {
    const { projection, norm, stoppedAt } = this.walkBack(merge.branchInput);
    if (stoppedAt) {
      throw new DecoderStructureError(
        `the attention branch reaches residual merge ${label(merge.node)} from ${label(stoppedAt)}, which is neither o_proj ` +
          '(a MatMul, optionally + bias or x scale) nor a normalisation of its output',
        layer,
      );
    }
    if (!projection) throw new DecoderStructureError(`no o_proj MatMul found before residual merge ${label(merge.node)}`, layer);
    if (this.index.isConstant(projection.input[0]) || !this.index.isConstant(projection.input[1])) {
      throw new DecoderStructureError(
        `${label(projection)} feeds the attention residual merge ${label(merge.node)} but is not activation x weight, so it is not o_proj`,
        layer,
      );
    }
    return { oProj: projection, postNorm: norm };
  }

  /** The MLP's post-norm (Gemma's post_feedforward_layernorm), for the report; the MLP itself may be any shape. */
  mlpPostNorm(merge: ResidualMerge): NormStep | undefined {
    const { projection, norm } = this.walkBack(merge.branchInput);
    return projection ? norm : undefined;
  }

  oProjInFeatures(oProj: NodeProto): number | undefined {
    if (oProj.op_type === 'MatMulNBits') return attrInt(oProj, 'K');
    const w = this.index.initializers.get(oProj.input[1]);
    if (!w || w.dims.length !== 2) return undefined;
    const transB = attrInt(oProj, 'transB') ?? 0;
    return toNumber(w.dims[transB ? 1 : 0]);
  }
}

/**
 * Without config.json: the query reshape [b, s, heads, head_dim] is a constant 4-element shape in the attention
 * branch whose last two entries multiply to o_proj's in-features; the largest head count is the query's (GQA).
 */
function headsFromReshape(index: GraphIndex, layer: LayerPoints, inFeatures: number | undefined): number | undefined {
  if (inFeatures === undefined) return undefined;
  let best: number | undefined;
  for (const n of layer.attention.branchNodes) {
    if (n.op_type !== 'Reshape') continue;
    const shape = index.initializers.get(n.input[1]);
    if (!shape || shape.data_type !== 7 || !shape.raw_data || shape.raw_data.byteLength !== 32) continue;
    const v = new BigInt64Array(Uint8Array.from(shape.raw_data).buffer);
    const [h, d] = [Number(v[2]), Number(v[3])];
    if (h > 0 && d > 0 && h * d === inFeatures && (best === undefined || h > best)) best = h;
  }
  return best;
}

export interface FindOptions {
  /** Pack config (text_config), checked against the structure and used for heads / head_dim. */
  config?: TextConfig;
}

export function findDecoderStructure(model: ModelProto, opts: FindOptions = {}): DecoderStructure {
  const finder = new StructureFinder(model);
  const { index } = finder;
  const revisionInput = model.graph.input.find((v) => v.name.startsWith('revision_'));
  if (revisionInput) {
    throw new DecoderStructureError(`the graph already has input '${revisionInput.name}': it is a revisable decoder, not an original one`);
  }
  const start = findEmbeddings(index);
  const types = new ElementTypes(index);
  const merges: ResidualMerge[] = [];
  let stream: string | undefined = start.tensor;
  while (stream) {
    const layer = Math.floor(merges.length / 2);
    const merge = finder.findMerge(stream, layer);
    if (!merge) break;
    merges.push(merge);
    stream = merge.sumOutput;
    if (!stream) break;
    if (merges.length > 4096) throw new DecoderStructureError('residual chain does not end');
  }
  if (merges.length === 0) {
    // Old optimum merges put the layers in If branches (use_cache_branch); the top level then shows no layers.
    const nested = model.graph.node.some((n) => n.op_type === 'If' || n.op_type === 'Loop')
      ? '; the layers seem to sit inside an If/Loop subgraph (use_cache_branch merge), which is not supported'
      : '';
    throw new DecoderStructureError(`no residual merge (Add or Skip*LayerNormalization) consumes '${start.tensor}'${nested}`, 0);
  }

  const layers: LayerPoints[] = [];
  for (let i = 0; i < merges.length; i += 2) {
    const layer = i / 2;
    const attention = merges[i];
    const mlp = merges[i + 1];
    const attentionOp = [...attention.branchNodes].find((n) => ATTENTION_OPS.has(n.op_type));
    if (!attentionOp) {
      throw new DecoderStructureError(`the branch into residual merge ${label(attention.node)} has no attention op (Softmax, GroupQueryAttention...)`, layer);
    }
    if (!mlp) {
      throw new DecoderStructureError(`attention merge ${label(attention.node)} is not followed by an MLP residual merge (the layer's end is missing)`, layer);
    }
    const mlpAttention = [...mlp.branchNodes].find((n) => FUSED_ATTENTION_OPS.has(n.op_type) || n.output.some((o) => o.startsWith('present')));
    if (mlpAttention) {
      throw new DecoderStructureError(
        `the branch into ${label(mlp.node)} (expected MLP) holds attention ${label(mlpAttention)}; the layer has no separate attention/MLP residual merges`,
        layer,
      );
    }
    if (mlp.kind === 'add' && !mlp.sumOutput) throw new DecoderStructureError(`${label(mlp.node)} has no output`, layer);
    const { oProj, postNorm } = finder.findOProj(attention, layer);
    // The layer revision lands on the stream after the layer: the Add's sum, or a fused merge's branch operand.
    const layerTensor = mlp.kind === 'add' ? mlp.sumOutput! : mlp.branchInput;
    layers.push({
      layer,
      oProj,
      oProjInput: oProj.input[0],
      headElemType: types.of(oProj.input[0]) ?? types.of(start.tensor) ?? DataType.FLOAT,
      layerElemType: types.of(layerTensor) ?? types.of(start.tensor) ?? DataType.FLOAT,
      postAttentionNorm: postNorm,
      postFeedforwardNorm: finder.mlpPostNorm(mlp),
      attentionOp,
      attention,
      mlp,
    });
  }

  const config = opts.config;
  if (config?.num_hidden_layers !== undefined && config.num_hidden_layers !== layers.length) {
    throw new DecoderStructureError(`found ${layers.length} layers in the graph but config.json says num_hidden_layers=${config.num_hidden_layers}`);
  }

  const startInfo = model.graph.input.find((v) => v.name === start.dimsOf);
  const startDims = tensorDims(startInfo) ?? [];
  const lookup = start.lookup;
  // A quantized table's values are integers; its scales carry the activation type.
  const tableType = lookup && index.initializers.get(lookup.input[lookup.op_type === 'Gather' ? 0 : 2])?.data_type;
  const elemType = types.of(start.tensor) ?? (lookup ? (tableType ?? 1) : (tensorElemType(startInfo) ?? 1));

  const tableDims = lookup?.op_type === 'Gather' ? index.initializers.get(lookup.input[0])?.dims : undefined;
  const hiddenFromGraph = lookup
    ? tableDims?.length === 2
      ? toNumber(tableDims[1])
      : undefined
    : startDims[2]?.dim_value !== undefined
      ? toNumber(startDims[2].dim_value)
      : undefined;
  const hidden = config?.hidden_size ?? hiddenFromGraph;
  if (hidden === undefined) throw new DecoderStructureError('hidden size unknown: the embeddings have no static last dim and there is no config.json');
  if (hiddenFromGraph !== undefined && hiddenFromGraph !== hidden) {
    throw new DecoderStructureError(`embedding width ${hiddenFromGraph} != config hidden_size ${hidden}`);
  }

  const inFeatures = finder.oProjInFeatures(layers[0].oProj);
  const heads = config?.num_attention_heads ?? attrInt(layers[0].attentionOp, 'num_heads') ?? headsFromReshape(index, layers[0], inFeatures);
  if (heads === undefined) {
    throw new DecoderStructureError('number of attention heads unknown: no config.json num_attention_heads and no num_heads attribute');
  }
  const headDim = config?.head_dim ?? (inFeatures !== undefined ? inFeatures / heads : hidden / heads);
  for (const l of layers) {
    const k = finder.oProjInFeatures(l.oProj);
    if (k !== undefined && k !== heads * headDim) {
      throw new DecoderStructureError(`o_proj ${label(l.oProj)} takes ${k} features, expected heads*head_dim = ${heads}*${headDim}`, l.layer);
    }
  }

  const nodeLayer = new Map<NodeProto, number>();
  const shared = new Set<NodeProto>();
  const claim = (node: NodeProto, layer: number) => {
    const prev = nodeLayer.get(node);
    if (prev !== undefined && prev !== layer) shared.add(node);
    nodeLayer.set(node, layer);
  };
  for (const l of layers) {
    for (const n of l.attention.branchNodes) claim(n, l.layer);
    for (const n of l.mlp.branchNodes) claim(n, l.layer);
    // A fused merge also normalizes for the branch after it, so its gamma belongs to that branch's layer.
    claim(l.attention.node, l.layer);
    if (l.mlp.kind === 'add') claim(l.mlp.node, l.layer);
    else if (l.layer + 1 < layers.length) claim(l.mlp.node, l.layer + 1);
  }
  for (const n of shared) nodeLayer.delete(n);

  const dimName = (i: number, fallback: string) => startDims[i]?.dim_param || fallback;
  return {
    residualStyle: merges[0].kind,
    types,
    layout: describeLayout(
      index,
      layers.map((l) => ({
        ...l,
        attentionBranch: l.attention.branchNodes,
        mergeKinds: [l.attention.kind, l.mlp.kind],
        postAttentionNorm: !!l.postAttentionNorm,
        postFeedforwardNorm: !!l.postFeedforwardNorm,
      })),
    ),
    embeddings: start.tensor,
    elemType,
    batchDim: dimName(0, 'batch'),
    seqDim: dimName(1, 'sequence_length'),
    layers,
    hidden,
    heads,
    headDim,
    nodeLayer,
  };
}
