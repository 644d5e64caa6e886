/**
 * The float32 <-> float16 converter libs/vlm feeds float16-I/O decoders through (Node 20 has no Float16Array).
 * Expected bits are worked out by hand from IEEE 754 binary16 (1 sign, 5 exponent bits biased by 15, 10 mantissa bits),
 * and agree with numpy's `np.float16(x).view(np.uint16)`.
 */
import { describe, expect, it } from 'vitest';
import { floatToHalf as toHalfBits, halfToFloat as fromHalfBits } from '@libs/onnx-graph';
import { fromHalfArray, toHalfArray } from '../src/float16';

describe('toHalfBits (round to nearest, ties to even)', () => {
  it.each([
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [0.1, 0x2e66], // 0.1 = 1.6 x 2^-4: mantissa 0.6 x 1024 = 614.4 -> 614 = 0x266
    [1 / 3, 0x3555], // 1.333 x 2^-2: 341.33 -> 341 = 0x155
    [2 / 3, 0x3955],
    [65504, 0x7bff], // largest finite
    [65519, 0x7bff], // below the midpoint 65520 to inf
    [65520, 0x7c00], // the tie with 0x7bff (odd) goes up, to inf
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
    [2 ** -24, 0x0001], // smallest subnormal
    [1.5 * 2 ** -25, 0x0001],
    [2 ** -25, 0x0000], // tie between 0 and 0x0001: to even, zero
    [3 * 2 ** -25, 0x0002], // tie between 0x0001 and 0x0002: to even
    [1e-8, 0x0000],
    [1 + 2 ** -11, 0x3c00], // tie between 1 and 1 + 2^-10: to even
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: to even
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
    [0, 0x0000],
    [-0, 0x8000],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
  ])('%d -> %i', (x, bits) => {
    expect(toHalfBits(x)).toBe(bits);
  });

  it('keeps NaN a NaN', () => {
    const h = toHalfBits(NaN);
    expect(h & 0x7c00).toBe(0x7c00);
    expect(h & 0x3ff).not.toBe(0);
    expect(fromHalfBits(h)).toBeNaN();
  });
});

describe('fromHalfBits', () => {
  it.each([
    [0x3c00, 1],
    [0xc000, -2],
    [0x7bff, 65504],
    [0x3555, 0.333251953125],
    [0x0001, 2 ** -24],
    [0x03ff, 6.097555160522461e-5],
    [0x0400, 2 ** -14],
    [0x8000, -0],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ])('%i -> %d', (bits, x) => {
    expect(fromHalfBits(bits)).toBe(x);
  });
});

describe('every float16', () => {
  const all = Uint16Array.from({ length: 0x10000 }, (_, h) => h);
  const values = fromHalfArray(all);
  const finite = (h: number) => (h & 0x7c00) !== 0x7c00;

  it('round-trips through float32, and the table agrees with the formula', () => {
    for (let h = 0; h < 0x10000; h++) {
      if (!finite(h) && h & 0x3ff) continue; // NaN payloads are not kept
      expect(values[h]).toBe(fromHalfBits(h));
      expect(toHalfBits(values[h])).toBe(h);
    }
    expect(Array.from(toHalfArray(values.subarray(0x3c00, 0x3c10)))).toEqual(Array.from(all.subarray(0x3c00, 0x3c10)));
  });

  it('sends each midpoint between neighbours to the even one, and just off it to the nearer one', () => {
    // Positive finite neighbours h, h + 1 (across the subnormal/normal boundary and every exponent).
    for (let h = 0; h < 0x7bff; h++) {
      const lo = values[h];
      const hi = values[h + 1];
      const mid = (lo + hi) / 2; // exact in float32: float16 has 13 fewer mantissa bits
      expect(toHalfBits(mid)).toBe(h & 1 ? h + 1 : h);
      const ulp32 = Math.abs(mid) * 2 ** -23;
      expect(toHalfBits(mid - ulp32)).toBe(h);
      expect(toHalfBits(mid + ulp32)).toBe(h + 1);
      expect(toHalfBits(-mid)).toBe((h & 1 ? h + 1 : h) | 0x8000);
    }
  });
});
