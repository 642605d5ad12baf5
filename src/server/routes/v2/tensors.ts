/**
 * Tensors of the Open Inference Protocol (KServe v2): datatypes, the JSON form
 * (row-major `data`, flat or nested) and Triton's binary tensor data extension
 * (raw little-endian bytes; BYTES elements each prefixed with a 4-byte
 * little-endian length). Pure functions: the routes (./index.ts) and the tests use them.
 */
import { Errors } from '../../../errors.js';
import type { NamedTensor, TensorData } from '../../../inference/runner.js';

/** Protocol datatype → ONNX Runtime type and bytes per element (BYTES: variable). */
export const DATATYPES = {
  BOOL: { ort: 'bool', size: 1 },
  UINT8: { ort: 'uint8', size: 1 },
  UINT16: { ort: 'uint16', size: 2 },
  UINT32: { ort: 'uint32', size: 4 },
  UINT64: { ort: 'uint64', size: 8 },
  INT8: { ort: 'int8', size: 1 },
  INT16: { ort: 'int16', size: 2 },
  INT32: { ort: 'int32', size: 4 },
  INT64: { ort: 'int64', size: 8 },
  FP16: { ort: 'float16', size: 2 },
  FP32: { ort: 'float32', size: 4 },
  FP64: { ort: 'float64', size: 8 },
  BYTES: { ort: 'string', size: 0 },
} as const;

export type Datatype = keyof typeof DATATYPES;

const isDatatype = (value: unknown): value is Datatype => typeof value === 'string' && Object.hasOwn(DATATYPES, value);

/** The protocol's name for an ONNX Runtime type, or undefined for one it cannot carry (bfloat16, non-tensors). */
export function datatypeOf(ortType: string): Datatype | undefined {
  return (Object.keys(DATATYPES) as Datatype[]).find((d) => DATATYPES[d].ort === ortType);
}

/** A decoded input: numbers in the typed array ONNX Runtime takes; BYTES as raw byte strings. */
export interface DecodedTensor {
  name: string;
  datatype: Datatype;
  shape: number[];
  data: Exclude<TensorData, string[]> | Buffer[];
  /** True when the data came in the binary section. */
  binary?: boolean;
}

const bad = (message: string) => new Errors.INVALID_REQUEST(message);

/** Integer ranges of the integer datatypes up to 32 bits. */
const INT_RANGES: Partial<Record<Datatype, [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
};

function typedArray(datatype: Exclude<Datatype, 'BYTES'>, length: number): Exclude<TensorData, string[]> {
  switch (datatype) {
    case 'BOOL':
    case 'UINT8':
      return new Uint8Array(length);
    case 'UINT16':
    case 'FP16':
      return new Uint16Array(length);
    case 'UINT32':
      return new Uint32Array(length);
    case 'UINT64':
      return new BigUint64Array(length);
    case 'INT8':
      return new Int8Array(length);
    case 'INT16':
      return new Int16Array(length);
    case 'INT32':
      return new Int32Array(length);
    case 'INT64':
      return new BigInt64Array(length);
    case 'FP32':
      return new Float32Array(length);
    case 'FP64':
      return new Float64Array(length);
  }
}

// IEEE 754 half precision, rounding to nearest even.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
export function toHalf(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf, NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow: Inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow: ±0
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}
export function fromHalf(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Elements a shape holds. */
export const elementCount = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Row-major `data`, flat or nested to any depth, as a flat list. */
function flatten(data: unknown[], out: unknown[] = []): unknown[] {
  for (const item of data) {
    if (Array.isArray(item)) flatten(item, out);
    else out.push(item);
  }
  return out;
}

/** One JSON element into the typed array, checked against the datatype. */
function setElement(target: Exclude<TensorData, string[]>, i: number, value: unknown, datatype: Datatype, name: string): void {
  const fail = () => bad(`input "${name}": element ${i} (${JSON.stringify(value)?.slice(0, 40)}) is not a ${datatype} value`);
  if (datatype === 'BOOL') {
    if (typeof value !== 'boolean') throw fail();
    (target as Uint8Array)[i] = value ? 1 : 0;
    return;
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) throw fail();
  if (datatype === 'FP16') (target as Uint16Array)[i] = toHalf(value);
  else if (datatype === 'FP32' || datatype === 'FP64') (target as Float32Array)[i] = value;
  else if (datatype === 'INT64' || datatype === 'UINT64') {
    if (!Number.isSafeInteger(value) || (datatype === 'UINT64' && value < 0)) throw fail();
    (target as BigInt64Array)[i] = BigInt(value);
  } else {
    const [min, max] = INT_RANGES[datatype]!;
    if (!Number.isInteger(value) || value < min || value > max) throw fail();
    (target as Int32Array)[i] = value;
  }
}

/** A `shape` as the protocol gives it: non-negative integers. */
function checkShape(shape: unknown, name: string): number[] {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || (d as number) < 0)) {
    throw bad(`input "${name}": shape must be an array of non-negative integers`);
  }
  return shape as number[];
}

/**
 * One request input (`{name, shape, datatype, parameters?, data?}`) decoded;
 * `binary` hands out the next `binary_data_size` bytes of the binary section.
 */
export function decodeInput(input: unknown, binary: (size: number, name: string) => Buffer): DecodedTensor {
  if (!input || typeof input !== 'object' || Array.isArray(input)) throw bad('every input must be an object');
  const { name, shape: rawShape, datatype, parameters, data } = input as Record<string, unknown>;
  if (typeof name !== 'string' || name.length === 0) throw bad('every input needs a "name"');
  if (!isDatatype(datatype)) throw bad(`input "${name}": datatype ${JSON.stringify(datatype)} is none of ${Object.keys(DATATYPES).join(', ')}`);
  const shape = checkShape(rawShape, name);
  const count = elementCount(shape);
  const size = (parameters as Record<string, unknown> | undefined)?.binary_data_size;
  if (size !== undefined) {
    if (!Number.isSafeInteger(size) || (size as number) < 0) throw bad(`input "${name}": binary_data_size must be a non-negative integer`);
    if (data !== undefined) throw bad(`input "${name}": both data and binary_data_size`);
    return { name, datatype, shape, data: fromBinary(binary(size as number, name), datatype, count, name), binary: true };
  }
  if (!Array.isArray(data)) throw bad(`input "${name}": no data (a row-major array) and no binary_data_size`);
  const flat = flatten(data);
  if (flat.length !== count) throw bad(`input "${name}": shape [${shape.join(', ')}] holds ${count} elements, data has ${flat.length}`);
  if (datatype === 'BYTES') {
    return {
      name,
      datatype,
      shape,
      data: flat.map((v, i) => {
        if (typeof v !== 'string') throw bad(`input "${name}": element ${i} is not a string (BYTES)`);
        return Buffer.from(v, 'utf8');
      }),
    };
  }
  const target = typedArray(datatype, count);
  for (const [i, value] of flat.entries()) setElement(target, i, value, datatype, name);
  return { name, datatype, shape, data: target };
}

/** Raw bytes of the binary extension as a tensor of `count` elements. */
export function fromBinary(bytes: Buffer, datatype: Datatype, count: number, name: string): DecodedTensor['data'] {
  if (datatype === 'BYTES') {
    const out: Buffer[] = [];
    let at = 0;
    while (at < bytes.length) {
      if (at + 4 > bytes.length) throw bad(`input "${name}": a BYTES element's 4-byte length is cut short`);
      const length = bytes.readUInt32LE(at);
      if (at + 4 + length > bytes.length) throw bad(`input "${name}": a BYTES element runs past binary_data_size`);
      out.push(bytes.subarray(at + 4, at + 4 + length));
      at += 4 + length;
    }
    if (out.length !== count) throw bad(`input "${name}": the shape holds ${count} elements, the binary data ${out.length}`);
    return out;
  }
  const { size } = DATATYPES[datatype];
  if (bytes.length !== count * size) {
    throw bad(`input "${name}": ${count} ${datatype} elements take ${count * size} bytes, binary_data_size is ${bytes.length}`);
  }
  const target = typedArray(datatype, count);
  // A copy: the body's bytes need not be aligned for the typed array (little-endian, as the extension says).
  new Uint8Array(target.buffer).set(bytes);
  if (datatype === 'BOOL' && (target as Uint8Array).some((v) => v > 1)) throw bad(`input "${name}": BOOL elements must be 0 or 1`);
  return target;
}

/** A decoded input as ONNX Runtime takes it (BYTES as UTF-8 strings). */
export function toOrt(tensor: DecodedTensor): NamedTensor {
  const data = tensor.datatype === 'BYTES' ? (tensor.data as Buffer[]).map((b) => b.toString('utf8')) : tensor.data;
  return { name: tensor.name, type: DATATYPES[tensor.datatype].ort, dims: tensor.shape, data: data as TensorData };
}

/** An output's elements as JSON values (INT64/UINT64 as numbers: exact up to 2^53). */
export function toJsonData(datatype: Datatype, data: TensorData | Buffer[]): unknown[] {
  if (datatype === 'BYTES') return (data as (string | Buffer)[]).map((v) => (typeof v === 'string' ? v : v.toString('utf8')));
  if (datatype === 'BOOL') return Array.from(data as Uint8Array, (v) => v !== 0);
  if (datatype === 'FP16') return Array.from(data as Uint16Array, fromHalf);
  if (datatype === 'INT64' || datatype === 'UINT64') return Array.from(data as BigInt64Array, Number);
  return Array.from(data as Float32Array);
}

/** An output's elements in the binary extension's layout. */
export function toBinary(datatype: Datatype, data: TensorData | Buffer[]): Buffer {
  if (datatype === 'BYTES') {
    const parts: Buffer[] = [];
    for (const v of data as (string | Buffer)[]) {
      const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
      const length = Buffer.alloc(4);
      length.writeUInt32LE(bytes.length);
      parts.push(length, bytes);
    }
    return Buffer.concat(parts);
  }
  const typed = data as Exclude<TensorData, string[]>;
  return Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
}
