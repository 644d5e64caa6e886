/**
 * float32 <-> IEEE 754 binary16 arrays, for decoders whose I/O is float16 (what `optimum --fp16` exports): Node 20
 * has no Float16Array, so onnxruntime-node takes and gives float16 tensors as their raw bits in a Uint16Array.
 * The scalar conversions are libs/onnx-graph's (the same ones initializers are read and written with): round to
 * nearest, ties to even (as numpy's astype and PyTorch's .half()), subnormals down to 2^-24, inf past 65504 (+ half
 * an ulp), NaN kept a NaN.
 */
import { floatToHalf, halfToFloat } from '@libs/onnx-graph';

export function toHalfArray(values: Float32Array, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]);
  return out;
}

let halfTable: Float32Array | undefined;

/** float16 bits to float32 values, through a 65536-entry table (256 KiB, built once): logits come out every step. */
export function fromHalfArray(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const table = (halfTable ??= Float32Array.from({ length: 0x10000 }, (_, h) => halfToFloat(h)));
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}
