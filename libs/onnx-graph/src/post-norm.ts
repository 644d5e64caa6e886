/**
 * Normalisations between o_proj and the attention residual merge (Gemma 2/3 `post_attention_layernorm`, and the
 * `post_feedforward_layernorm` before the MLP merge), fused or decomposed, recognised from structure:
 * - fused: one activation input, every other input constant (gamma, beta);
 * - decomposed (torch.onnx): a Mul/Div/Sub of an activation x by a statistic of x, i.e. a tensor computed from x and
 *   constants alone through a reduction (ReduceMean of x^2 for RMSNorm, of x for LayerNorm's centring).
 * A constant Mul by gamma (or Gemma's 1 + w) is a scale, handled by the caller like a bias Add.
 */
import { GraphIndex } from './graph-index';
import { NodeProto } from './onnx-proto';

const FUSED_NORM_OPS = new Set(['SimplifiedLayerNormalization', 'LayerNormalization', 'RMSNormalization']);
const REDUCE_OPS = new Set(['ReduceMean', 'ReduceSum', 'ReduceSumSquare', 'ReduceL2', 'ReduceMax']);
/** A statistic is a short chain (Pow, ReduceMean, Add eps, Sqrt, Reciprocal/Div, Cast); a long one is something else. */
const MAX_STATISTIC_NODES = 32;

export interface NormStep {
  node: NodeProto;
  kind: 'fused' | 'decomposed';
  /** The activation the step normalises. */
  input: string;
}

/** True when `stat` is computed from `x` and constants alone, through at least one reduction. */
export function isStatisticOf(index: GraphIndex, stat: string, x: string): boolean {
  const stack = [stat];
  const seen = new Set<string>();
  let reduced = false;
  let reachedX = false;
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    if (t === x) {
      reachedX = true;
      continue;
    }
    if (index.isConstant(t)) continue;
    const node = index.producerOf(t);
    if (!node || seen.size > MAX_STATISTIC_NODES) return false;
    if (REDUCE_OPS.has(node.op_type)) reduced = true;
    for (const i of node.input) if (i) stack.push(i);
  }
  return reduced && reachedX;
}

/** The normalisation step `node` is, or undefined when it is none. */
export function normStep(index: GraphIndex, node: NodeProto): NormStep | undefined {
  const activations = node.input.filter((i) => i && !index.isConstant(i));
  if (FUSED_NORM_OPS.has(node.op_type)) {
    return activations.length === 1 && activations[0] === node.input[0] ? { node, kind: 'fused', input: node.input[0] } : undefined;
  }
  if (!['Mul', 'Div', 'Sub'].includes(node.op_type) || node.input.length !== 2 || activations.length !== 2) return undefined;
  const [a, b] = node.input;
  if (isStatisticOf(index, b, a)) return { node, kind: 'decomposed', input: a };
  // x * rsqrt(...) may come in either order; x / stat and x - mean(x) only one way round.
  if (node.op_type === 'Mul' && isStatisticOf(index, a, b)) return { node, kind: 'decomposed', input: b };
  return undefined;
}
