/**
 * float32 <-> IEEE 754 binary16, for decoders whose I/O is float16 (what `optimum --fp16` exports): Node 20 has no
 * Float16Array, so onnxruntime-node takes and gives float16 tensors as their raw bits in a Uint16Array.
 * float32 -> float16 rounds to nearest, ties to even (as numpy's astype and PyTorch's .half()), keeps subnormals
 * (down to 2^-24), overflows to inf past 65504 (+ half an ulp), and keeps NaN a NaN.
 */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float16 bits nearest `value` (ties to even). */
export function toHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf, or a quiet NaN
  const e = exp - 127 + 15; // the float16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal (or zero) in float16: the implicit 1 joins the mantissa, shifted right by 1 - e more bits.
    if (e < -10) return sign; // below half of 2^-24: rounds to zero
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (rem > mid || (rem === mid && half & 1) ? half + 1 : half);
  }
  const half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, which is the right result (up to inf at 65520).
  return sign | (rem > 0x1000 || (rem === 0x1000 && half & 1) ? half + 1 : half);
}

/** The value of float16 bits `h` (exact: every float16 is a float32). */
export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function toHalfArray(values: Float32Array, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  for (let i = 0; i < values.length; i++) out[i] = toHalfBits(values[i]);
  return out;
}

let halfTable: Float32Array | undefined;

/** float16 bits to float32 values, through a 65536-entry table (256 KiB, built once): logits come out every step. */
export function fromHalfArray(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const table = (halfTable ??= Float32Array.from({ length: 0x10000 }, (_, h) => fromHalfBits(h)));
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}
