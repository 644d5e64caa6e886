/**
 * Producer/consumer maps over a graph's top level, the basis of every structural query.
 */
import { GraphProto, NodeProto, TensorProto } from './onnx-proto';

export interface Use {
  node: NodeProto;
  index: number;
}

/** Ops whose output depends only on an input's shape, never its values. */
const SHAPE_ONLY_OPS = new Set(['Shape', 'Size']);

export class GraphIndex {
  readonly producer = new Map<string, Use>();
  readonly consumers = new Map<string, Use[]>();
  readonly initializers = new Map<string, TensorProto>();
  readonly graphInputs = new Set<string>();
  readonly graphOutputs = new Set<string>();
  private constants?: Set<string>;

  constructor(readonly graph: GraphProto) {
    for (const t of graph.initializer) if (t.name) this.initializers.set(t.name, t);
    for (const v of graph.input) this.graphInputs.add(v.name);
    for (const v of graph.output) this.graphOutputs.add(v.name);
    graph.node.forEach((node) => {
      node.output.forEach((name, index) => name && this.producer.set(name, { node, index }));
      node.input.forEach((name, index) => {
        if (!name) return;
        const list = this.consumers.get(name) ?? [];
        list.push({ node, index });
        this.consumers.set(name, list);
      });
    });
  }

  producerOf(tensor: string): NodeProto | undefined {
    return this.producer.get(tensor)?.node;
  }

  consumersOf(tensor: string): Use[] {
    return this.consumers.get(tensor) ?? [];
  }

  /**
   * A tensor is constant when it comes from initializers alone (e.g. a DequantizeLinear of a stored weight),
   * as opposed to an activation that flows from the graph inputs. Computed once, in node order, so deep graphs
   * need no recursion.
   */
  isConstant(tensor: string): boolean {
    if (!this.constants) {
      const constants = new Set([...this.initializers.keys()].filter((n) => !this.graphInputs.has(n)));
      for (const node of this.graph.node) {
        const constant = node.op_type === 'Constant' || node.input.every((i) => !i || constants.has(i));
        if (constant && !node.op_type.startsWith('Random')) for (const o of node.output) if (o) constants.add(o);
      }
      this.constants = constants;
    }
    return this.constants.has(tensor);
  }

  /**
   * Nodes whose values flow into `tensor`, walking back until a stop tensor or a stop node. Shape-only edges are
   * not followed: every layer reads shapes of earlier tensors (masks, reshapes), which is no data dependency.
   */
  valueAncestry(tensor: string, stopTensors: Set<string>, stopNodes: Set<NodeProto>): { nodes: Set<NodeProto>; reachedStop: boolean } {
    const nodes = new Set<NodeProto>();
    let reachedStop = false;
    const stack = [tensor];
    const seen = new Set<string>();
    while (stack.length) {
      const t = stack.pop()!;
      if (seen.has(t)) continue;
      seen.add(t);
      if (stopTensors.has(t)) {
        reachedStop = true;
        continue;
      }
      const node = this.producerOf(t);
      if (!node) continue;
      if (stopNodes.has(node)) {
        reachedStop = true;
        continue;
      }
      if (nodes.has(node)) continue;
      nodes.add(node);
      if (SHAPE_ONLY_OPS.has(node.op_type)) continue;
      for (const i of node.input) if (i && !this.initializers.has(i)) stack.push(i);
    }
    return { nodes, reachedStop };
  }
}
