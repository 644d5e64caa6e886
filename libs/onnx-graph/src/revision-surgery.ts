/**
 * Rewrites a decoder so each forward call can add revision vectors and read activation taps.
 *
 * Per layer l, with m = revision_mask[b, s]:
 * - head level: o_proj input X ← X + m * revision_head[b, l, :]. Editing o_proj's INPUT (not its output) keeps
 *   head h's slice [h*head_dim, (h+1)*head_dim) in head space, as ITI/HSI read it (research/iar_hsi.md 2.3).
 * - layer level: the residual stream after the layer ← stream + m * revision_layer[b, l, :].
 * The producer's output is renamed and the revised tensor takes the original name, so every consumer (including
 * graph outputs and subgraphs referring by name) sees revised values with no consumer rewiring. A fused
 * Skip*LayerNormalization gets the vector on its branch operand, so both its normalized output and its sum see it.
 * With all-zero inputs each inserted Add is x + 0 = x, so outputs stay bit-identical.
 */
import { DecoderStructure } from './decoder-structure';
import { GraphIndex } from './graph-index';
import { int64Tensor, makeNode, makeValueInfo } from './model-builder';
import { DataType, ModelProto, NodeProto, defaultOpset } from './onnx-proto';

export const REVISION_INPUTS = ['revision_layer', 'revision_head', 'revision_mask'] as const;
export const TAP_OUTPUTS = ['tap_layer', 'tap_head'] as const;

export class AlreadyRevisableError extends Error {}

export interface LayerPointReport {
  layer: number;
  /** o_proj node and the tensor (its activation input) that receives the head revision. */
  o_proj: string;
  o_proj_input: string;
  /** The attention residual merge (for reference) and the merge that ends the layer. */
  attention_residual: string;
  residual: string;
  residual_kind: 'add' | 'skip-norm';
  /** The tensor tap_layer reads (the revised stream after the layer). */
  residual_tensor: string;
  /** Sandwich norms (Gemma 2/3): the norm on o_proj's output, and on the MLP's output; null when the layer has none. */
  post_attention_norm: string | null;
  post_feedforward_norm: string | null;
}

export function isRevisable(model: ModelProto): boolean {
  const names = new Set(model.graph.input.map((v) => v.name));
  return REVISION_INPUTS.some((n) => names.has(n));
}

const P = '/revision';

const nodeName = (n: NodeProto) => n.name || n.output[0];

export function addRevisionPoints(model: ModelProto, structure: DecoderStructure): LayerPointReport[] {
  if (isRevisable(model)) throw new AlreadyRevisableError('the graph already has revision_* inputs: it is a revisable decoder');
  const graph = model.graph;
  const index = new GraphIndex(graph);
  const taken = new Set([...index.producer.keys(), ...index.graphInputs, ...index.initializers.keys()]);
  for (const n of [...REVISION_INPUTS, ...TAP_OUTPUTS]) {
    if (taken.has(n) || index.graphOutputs.has(n)) throw new AlreadyRevisableError(`the graph already has a tensor named '${n}'`);
  }
  const useAxesInput = defaultOpset(model) >= 13;
  const prefix: NodeProto[] = [];
  const suffix: NodeProto[] = [];
  const after = new Map<NodeProto, NodeProto[]>();
  const schedule = (anchor: NodeProto, ...nodes: NodeProto[]) => after.set(anchor, [...(after.get(anchor) ?? []), ...nodes]);
  const initializer = (name: string, values: number[], scalar = false) => {
    graph.initializer.push(int64Tensor(name, scalar ? [] : [values.length], values));
    return name;
  };
  const unsqueeze = (input: string, axes: number[], name: string): NodeProto =>
    useAxesInput
      ? makeNode('Unsqueeze', [input, initializer(`${name}/axes`, axes)], [`${name}/output_0`], name)
      : makeNode('Unsqueeze', [input], [`${name}/output_0`], name, { axes });
  const fresh = (name: string) => {
    let candidate = name;
    for (let i = 1; taken.has(candidate); i++) candidate = `${name}_${i}`;
    taken.add(candidate);
    return candidate;
  };

  // Revision inputs and taps are float32 in the contract. Each insertion point computes in its own element type
  // (a float16 decoder, or the fp16 parts of a mixed one), so the inputs are cast once per type that occurs.
  const perType = new Map<string, string>();
  const once = (key: string, make: () => string) => perType.get(key) ?? perType.set(key, make()).get(key)!;
  const inType = (input: string, type: number): string =>
    type === DataType.FLOAT
      ? input
      : once(`${input}@${type}`, () => {
          const cast = makeNode('Cast', [input], [`${P}/${input}/cast_${type}`], `${P}/${input}/Cast_${type}`, { to: type });
          prefix.push(cast);
          return cast.output[0];
        });
  // Every layer's masked vectors in one product, [batch, seq, layers, width], so each revision point costs
  // one Gather and one Add: on small decoders the per-node overhead is what the revision costs.
  const mask = (type: number): string =>
    once(`mask@${type}`, () => {
      const u = unsqueeze(inType('revision_mask', type), [2, 3], `${P}/mask/Unsqueeze${type === DataType.FLOAT ? '' : `_${type}`}`);
      prefix.push(u);
      return u.output[0]; // [batch, seq, 1, 1]
    });
  const masked = (input: 'revision_layer' | 'revision_head', type: number): string =>
    once(`${input}/masked@${type}`, () => {
      const name = `${P}/${input === 'revision_layer' ? 'layer' : 'head'}${type === DataType.FLOAT ? '' : `_${type}`}`;
      const unsq = unsqueeze(inType(input, type), [1], `${name}/Unsqueeze`); // [batch, 1, layers, width]
      const mul = makeNode('Mul', [mask(type), unsq.output[0]], [`${name}/Mul/output_0`], `${name}/Mul`);
      prefix.push(unsq, mul);
      return mul.output[0];
    });
  // Built up front, layer before head, so a float32 decoder gets the same node order (and bytes) as always.
  for (const t of new Set(structure.layers.map((l) => l.layerElemType))) masked('revision_layer', t);
  for (const t of new Set(structure.layers.map((l) => l.headElemType))) masked('revision_head', t);
  // A one-element index keeps the gathered axis: tensor[:, [-1], :] is already [batch, 1, width].
  const last = initializer(`${P}/last_position`, [-1]);

  /** (mask * source)[:, :, layer, :] → [batch, seq, width] */
  const delta = (source: string, layerIndex: string, name: string): NodeProto =>
    makeNode('Gather', [source, layerIndex], [`${name}/Gather/output_0`], `${name}/Gather`, { axis: 2 });
  /** tensor[:, [-1], :] → [batch, 1, width], cast to float32 (the taps' contract type) where the point is not. */
  const tap = (tensor: string, name: string, type: number): NodeProto[] => {
    const gather = makeNode('Gather', [tensor, last], [`${name}/Gather/output_0`], `${name}/Gather`, { axis: 1 });
    if (type === DataType.FLOAT) return [gather];
    return [gather, makeNode('Cast', [gather.output[0]], [`${name}/Cast/output_0`], `${name}/Cast`, { to: DataType.FLOAT })];
  };
  /** Renames the producer's output so `tensor` becomes the revised value under its original name. */
  const reviseInPlace = (tensor: string, addend: string, name: string): { anchor: NodeProto; add: NodeProto } => {
    const use = index.producer.get(tensor);
    if (!use) throw new Error(`${name}: '${tensor}' has no producer node (a graph input cannot be revised in place)`);
    const pre = fresh(`${tensor}/pre_revision`);
    use.node.output[use.index] = pre;
    return { anchor: use.node, add: makeNode('Add', [pre, addend], [tensor], `${name}/Add`) };
  };

  const layerTaps: string[] = [];
  const headTaps: string[] = [];
  const reports: LayerPointReport[] = [];
  for (const l of structure.layers) {
    const base = `${P}/layers.${l.layer}`;
    const layerIndex = initializer(`${base}/index`, [l.layer], true);

    const headDelta = delta(masked('revision_head', l.headElemType), layerIndex, `${base}/head`);
    const head = reviseInPlace(l.oProjInput, headDelta.output[0], `${base}/head`);
    const headTap = tap(l.oProjInput, `${base}/tap_head`, l.headElemType);
    schedule(head.anchor, headDelta, head.add, ...headTap);
    headTaps.push(headTap.at(-1)!.output[0]);

    const layerDelta = delta(masked('revision_layer', l.layerElemType), layerIndex, `${base}/layer`);
    const merge = l.mlp;
    let residualTensor: string;
    if (merge.kind === 'add') {
      residualTensor = merge.sumOutput!;
      const rev = reviseInPlace(residualTensor, layerDelta.output[0], `${base}/layer`);
      const layerTap = tap(residualTensor, `${base}/tap_layer`, l.layerElemType);
      schedule(rev.anchor, layerDelta, rev.add, ...layerTap);
      layerTaps.push(layerTap.at(-1)!.output[0]);
    } else {
      // Fused residual: revise the branch operand only for this node, so input + skip carries the vector.
      const branch = merge.node.input[merge.branchIndex];
      const revised = fresh(`${base}/layer/revised_branch`);
      const add = makeNode('Add', [branch, layerDelta.output[0]], [revised], `${base}/layer/Add`);
      const anchor = index.producerOf(branch);
      if (!anchor) throw new Error(`layer ${l.layer}: fused residual branch '${branch}' has no producer`);
      schedule(anchor, layerDelta, add);
      merge.node.input[merge.branchIndex] = revised;
      if (!merge.node.output[3]) {
        while (merge.node.output.length < 4) merge.node.output.push('');
        merge.node.output[3] = fresh(`${base}/residual_sum`);
      }
      residualTensor = merge.node.output[3];
      const layerTap = tap(residualTensor, `${base}/tap_layer`, l.layerElemType);
      schedule(merge.node, ...layerTap);
      layerTaps.push(layerTap.at(-1)!.output[0]);
    }
    reports.push({
      layer: l.layer,
      o_proj: l.oProj.name ?? l.oProj.output[0],
      o_proj_input: l.oProjInput,
      attention_residual: l.attention.node.name ?? l.attention.node.output[0],
      residual: merge.node.name ?? merge.node.output[0],
      residual_kind: merge.kind,
      residual_tensor: residualTensor,
      post_attention_norm: l.postAttentionNorm ? nodeName(l.postAttentionNorm.node) : null,
      post_feedforward_norm: l.postFeedforwardNorm ? nodeName(l.postFeedforwardNorm.node) : null,
    });
  }

  const concatTaps = (parts: string[], output: string) => suffix.push(makeNode('Concat', parts, [output], `${P}/${output}/Concat`, { axis: 1 }));
  concatTaps(layerTaps, 'tap_layer');
  concatTaps(headTaps, 'tap_head');

  graph.node = [...prefix, ...graph.node.flatMap((n) => [n, ...(after.get(n) ?? [])]), ...suffix];

  const { batchDim, seqDim, hidden, heads, headDim } = structure;
  const layers = structure.layers.length;
  graph.input.push(
    makeValueInfo('revision_layer', DataType.FLOAT, [batchDim, layers, hidden]),
    makeValueInfo('revision_head', DataType.FLOAT, [batchDim, layers, heads * headDim]),
    makeValueInfo('revision_mask', DataType.FLOAT, [batchDim, seqDim]),
  );
  graph.output.push(
    makeValueInfo('tap_layer', DataType.FLOAT, [batchDim, layers, hidden]),
    makeValueInfo('tap_head', DataType.FLOAT, [batchDim, layers, heads * headDim]),
  );
  return reports;
}
