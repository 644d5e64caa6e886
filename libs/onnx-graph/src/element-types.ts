/**
 * Element types of a graph's float activations, propagated forward once in node order: revision points in a
 * mixed-precision decoder (fp16 attention, fp32 norms; fp32 I/O around an fp16 body) each get a vector of their
 * own type, so the inserted Add is well typed and the prepared graph loads. value_info, when an exporter wrote it,
 * wins; otherwise the common ops' rules, and for the rest the type of the first typed input (elementwise ops).
 * Only float types matter here; integer and bool tensors are tracked to keep the propagation right.
 */
import { GraphIndex } from './graph-index';
import { DataType, NodeProto, toNumber } from './onnx-proto';

const INT64_OUTPUT_OPS = new Set(['Shape', 'Size', 'ArgMax', 'ArgMin', 'NonZero']);
const BOOL_OUTPUT_OPS = new Set(['Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf']);
/** Ops whose output type is that of a given input (the value operand, not an index or a condition). */
const TYPE_FROM_INPUT: Record<string, number> = {
  Where: 1,
  MatMulNBits: 2, // the scales carry the activation type; the packed weights are uint8
  DequantizeLinear: 1,
  GatherBlockQuantized: 2,
  Range: 0,
};

function attr(node: NodeProto, name: string): number | undefined {
  const a = node.attribute.find((x) => x.name === name);
  return a?.i !== undefined ? toNumber(a.i) : undefined;
}

export class ElementTypes {
  private readonly types = new Map<string, number>();

  constructor(private readonly index: GraphIndex) {
    const g = index.graph;
    for (const t of g.initializer) if (t.name && t.data_type) this.types.set(t.name, t.data_type);
    for (const v of [...g.input, ...(g.value_info ?? []), ...g.output]) {
      const e = v.type?.tensor_type?.elem_type;
      if (e) this.types.set(v.name, e);
    }
    for (const node of g.node) this.visit(node);
  }

  of(tensor: string): number | undefined {
    return this.types.get(tensor);
  }

  private visit(node: NodeProto): void {
    const input = (i: number) => (node.input[i] ? this.types.get(node.input[i]) : undefined);
    let type: number | undefined;
    if (node.op_type === 'Cast') type = attr(node, 'to');
    else if (node.op_type === 'Constant') type = node.attribute.find((a) => a.name === 'value')?.t?.data_type ?? DataType.FLOAT;
    else if (INT64_OUTPUT_OPS.has(node.op_type)) type = DataType.INT64;
    else if (BOOL_OUTPUT_OPS.has(node.op_type)) type = DataType.BOOL;
    else if (node.op_type === 'CastLike') type = input(1);
    else if (node.op_type === 'ConstantOfShape') type = node.attribute.find((a) => a.name === 'value')?.t?.data_type ?? DataType.FLOAT;
    else if (node.op_type in TYPE_FROM_INPUT) type = input(TYPE_FROM_INPUT[node.op_type]);
    else if (node.op_type === 'Gather' || node.op_type === 'GatherElements' || node.op_type === 'GatherND') type = input(0);
    else type = node.input.map((_, i) => input(i)).find((t) => t !== undefined && t !== DataType.INT64 && t !== DataType.BOOL) ?? input(0);
    // Every output gets the same type: fused attention's present key/value and a Skip norm's sum (output 3) are in
    // the activation type too; the odd statistic outputs (mean, inv std dev) are never revision points.
    if (type !== undefined) for (const o of node.output) if (o && !this.types.has(o)) this.types.set(o, type);
  }
}

export const ELEM_TYPE_NAMES: Record<number, string> = {
  [DataType.FLOAT]: 'float32',
  [DataType.FLOAT16]: 'float16',
  [DataType.BFLOAT16]: 'bfloat16',
  11: 'float64',
};
