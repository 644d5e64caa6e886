/**
 * Reads and writes the values of float initializers in every storage form ONNX allows: raw_data (little-endian),
 * or the typed repeated fields (float_data; double_data; int32_data holding fp16/bf16 bit patterns).
 */
import { DataType, TensorProto, encodeMessage, isExternal, toNumber } from './onnx-proto';

export const FLOAT_TYPES: ReadonlySet<number> = new Set([DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16]);

export function elementCount(t: TensorProto): number {
  return t.dims.reduce<number>((n, d) => n * toNumber(d), 1);
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round-to-nearest-even float → fp16 bits, via the float32 bits. */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

function bf16ToFloat(b: number): number {
  u32[0] = b << 16;
  return f32[0];
}

function floatToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if (Number.isNaN(value)) return 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function rawView(t: TensorProto): DataView {
  const raw = t.raw_data!;
  return new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
}

function hasRaw(t: TensorProto): boolean {
  return !!t.raw_data && t.raw_data.byteLength > 0;
}

/** Values as float64 (exact for every supported type). */
export function readFloatValues(t: TensorProto): Float64Array {
  if (isExternal(t)) throw new Error(`initializer '${t.name}' is stored in external data`);
  const n = elementCount(t);
  const out = new Float64Array(n);
  const type = t.data_type;
  if (hasRaw(t)) {
    const v = rawView(t);
    for (let i = 0; i < n; i++) {
      if (type === DataType.FLOAT) out[i] = v.getFloat32(i * 4, true);
      else if (type === DataType.DOUBLE) out[i] = v.getFloat64(i * 8, true);
      else if (type === DataType.FLOAT16) out[i] = halfToFloat(v.getUint16(i * 2, true));
      else if (type === DataType.BFLOAT16) out[i] = bf16ToFloat(v.getUint16(i * 2, true));
    }
    return out;
  }
  const field = type === DataType.FLOAT ? t.float_data : type === DataType.DOUBLE ? t.double_data : (t.int32_data as number[]);
  for (let i = 0; i < n; i++) {
    const x = field[i] ?? 0;
    out[i] = type === DataType.FLOAT16 ? halfToFloat(x) : type === DataType.BFLOAT16 ? bf16ToFloat(x) : x;
  }
  return out;
}

/** A copy of `template` holding `values`, rounded to its type and stored in the same form (raw or typed field). */
export function withFloatValues(template: TensorProto, values: Float64Array): TensorProto {
  const type = template.data_type;
  const out: TensorProto = {
    ...template,
    float_data: [],
    double_data: [],
    int32_data: [],
    raw_data: undefined,
  };
  if (hasRaw(template)) {
    const width = type === DataType.DOUBLE ? 8 : type === DataType.FLOAT ? 4 : 2;
    const raw = Buffer.alloc(values.length * width);
    const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    values.forEach((x, i) => {
      if (type === DataType.FLOAT) v.setFloat32(i * 4, x, true);
      else if (type === DataType.DOUBLE) v.setFloat64(i * 8, x, true);
      else if (type === DataType.FLOAT16) v.setUint16(i * 2, floatToHalf(x), true);
      else v.setUint16(i * 2, floatToBf16(x), true);
    });
    out.raw_data = raw;
  } else if (type === DataType.FLOAT) out.float_data = Array.from(Float32Array.from(values));
  else if (type === DataType.DOUBLE) out.double_data = Array.from(values);
  else out.int32_data = Array.from(values, (x) => (type === DataType.FLOAT16 ? floatToHalf(x) : floatToBf16(x)));
  return out;
}

/** The tensor's stored payload (name excluded), for exact comparisons. */
export function tensorPayload(t: TensorProto): Uint8Array {
  return encodeMessage('TensorProto', { ...t, name: undefined, doc_string: undefined });
}
