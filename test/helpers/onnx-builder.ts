// Builds tiny ONNX models for tests, so decoder tests need no model files and the
// expected output of every model is known exactly. protobufjs encodes the small
// subset of onnx.proto these graphs need (field numbers as in onnx/onnx.proto).
import protobuf from 'protobufjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = protobuf.Root.fromJSON({
  nested: {
    ModelProto: {
      fields: {
        ir_version: { type: 'int64', id: 1 },
        producer_name: { type: 'string', id: 2 },
        graph: { type: 'GraphProto', id: 7 },
        opset_import: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
      },
    },
    OperatorSetIdProto: { fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } } },
    GraphProto: {
      fields: {
        node: { rule: 'repeated', type: 'NodeProto', id: 1 },
        name: { type: 'string', id: 2 },
        initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
        input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
        output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
      },
    },
    NodeProto: {
      fields: {
        input: { rule: 'repeated', type: 'string', id: 1 },
        output: { rule: 'repeated', type: 'string', id: 2 },
        name: { type: 'string', id: 3 },
        op_type: { type: 'string', id: 4 },
        attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
      },
    },
    AttributeProto: {
      fields: {
        name: { type: 'string', id: 1 },
        f: { type: 'float', id: 2 },
        i: { type: 'int64', id: 3 },
        g: { type: 'GraphProto', id: 6 },
        ints: { rule: 'repeated', type: 'int64', id: 8 },
        type: { type: 'int32', id: 20 },
      },
    },
    TensorProto: {
      fields: {
        dims: { rule: 'repeated', type: 'int64', id: 1 },
        data_type: { type: 'int32', id: 2 },
        name: { type: 'string', id: 8 },
        raw_data: { type: 'bytes', id: 9 },
      },
    },
    ValueInfoProto: { fields: { name: { type: 'string', id: 1 }, type: { type: 'TypeProto', id: 2 } } },
    TypeProto: { fields: { tensor_type: { type: 'TypeProtoTensor', id: 1 } } },
    TypeProtoTensor: { fields: { elem_type: { type: 'int32', id: 1 }, shape: { type: 'TensorShapeProto', id: 2 } } },
    TensorShapeProto: { fields: { dim: { rule: 'repeated', type: 'Dimension', id: 1 } } },
    Dimension: { fields: { dim_value: { type: 'int64', id: 1 }, dim_param: { type: 'string', id: 2 } } },
  },
});
const ModelProto = root.lookupType('ModelProto');

const FLOAT = 1;
const INT64 = 7;
const ATTR_INT = 2;
const ATTR_INTS = 7;

function floatTensor(name: string, dims: number[], values: Float32Array) {
  return { name, dims, data_type: FLOAT, raw_data: Buffer.from(values.buffer, values.byteOffset, values.byteLength) };
}
function int64Tensor(name: string, values: number[]) {
  const raw = Buffer.alloc(values.length * 8);
  for (const [i, v] of values.entries()) raw.writeBigInt64LE(BigInt(v), i * 8);
  return { name, dims: [values.length], data_type: INT64, raw_data: raw };
}
function valueInfo(name: string, dims: (number | string)[]) {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) },
      },
    },
  };
}

export interface ConstantModelSpec {
  /** One image's output, e.g. [4+C, A] values for yolov8; broadcast over the batch. */
  output: Float32Array;
  /** Shape of one image's output (without the batch axis). */
  outputShape: number[];
  inputWidth: number;
  inputHeight: number;
  /** Adds a large convolution whose result is multiplied by zero, so each run takes real time. */
  slow?: boolean;
}

/**
 * images [N,3,H,W] → output0 [N, ...outputShape] holding `output` for every image:
 * Expand(const, Concat(Shape(images)[0:1], outputShape)).
 */
export function buildConstantModel(spec: ConstantModelSpec): Uint8Array {
  const nodes: object[] = [
    { op_type: 'Shape', input: ['images'], output: ['shape'] },
    { op_type: 'Slice', input: ['shape', 'zero', 'one'], output: ['batch'] },
    { op_type: 'Concat', input: ['batch', 'rest'], output: ['target'], attribute: [{ name: 'axis', i: 0, type: ATTR_INT }] },
    { op_type: 'Expand', input: ['constant', 'target'], output: [spec.slow ? 'expanded' : 'output0'] },
  ];
  const initializer: object[] = [
    int64Tensor('zero', [0]),
    int64Tensor('one', [1]),
    int64Tensor('rest', spec.outputShape),
    floatTensor('constant', [1, ...spec.outputShape], spec.output),
  ];
  if (spec.slow) {
    const kernel = new Float32Array(64 * 3 * 7 * 7).fill(0.01);
    initializer.push(floatTensor('kernel', [64, 3, 7, 7], kernel), floatTensor('nothing', [], new Float32Array([0])));
    nodes.push(
      { op_type: 'Conv', input: ['images', 'kernel'], output: ['conv'], attribute: [{ name: 'pads', ints: [3, 3, 3, 3], type: ATTR_INTS }] },
      { op_type: 'Conv', input: ['conv', 'kernel2'], output: ['conv2'], attribute: [{ name: 'pads', ints: [3, 3, 3, 3], type: ATTR_INTS }] },
      { op_type: 'ReduceMean', input: ['conv2'], output: ['mean'], attribute: [{ name: 'keepdims', i: 0, type: ATTR_INT }] },
      { op_type: 'Mul', input: ['mean', 'nothing'], output: ['zeroed'] },
      { op_type: 'Add', input: ['expanded', 'zeroed'], output: ['output0'] },
    );
    initializer.push(floatTensor('kernel2', [64, 64, 7, 7], new Float32Array(64 * 64 * 49).fill(0.001)));
  }
  const model = {
    ir_version: 8,
    producer_name: 'sightline-tests',
    opset_import: [{ domain: '', version: 13 }],
    graph: {
      name: 'constant',
      node: nodes,
      initializer,
      input: [valueInfo('images', ['batch', 3, spec.inputHeight, spec.inputWidth])],
      output: [valueInfo('output0', ['batch', ...spec.outputShape])],
    },
  };
  const err = ModelProto.verify(model);
  if (err) throw new Error(err);
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}

/** Writes models/<name>/<version>/{model.onnx, model.json} under `repoDir`. */
export function writeModel(repoDir: string, name: string, version: string, onnx: Uint8Array, manifest: object): string {
  const dir = join(repoDir, name, version);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.onnx'), onnx);
  writeFileSync(join(dir, 'model.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

const BOOL = 9;
const ATTR_GRAPH = 5;

function scalarInfo(name: string, elemType: number) {
  return { name, type: { tensor_type: { elem_type: elemType, shape: { dim: [] } } } };
}

export interface StallingModelSpec {
  outputShape: number[];
  /** One image's output, broadcast over the batch (as in buildConstantModel). */
  output: Float32Array;
  inputWidth: number;
  inputHeight: number;
  /** Loop iterations when every input value is above `threshold` (the default never ends in practice). */
  iterations?: number;
  /** Input values are pixels ÷ 255: a white image (1.0) stalls, the grey warm-up image (0.45) does not. */
  threshold?: number;
}

/**
 * Like buildConstantModel, plus a Loop whose trip count is `iterations` when the
 * smallest input value exceeds `threshold` and 0 otherwise:
 * M = Cast(ReduceMin(images) > threshold, int64) × iterations; the loop adds 1 to a
 * float each iteration and the sum, multiplied by zero, is added to the output.
 * So a grey or dark image runs in microseconds while an all-white image keeps
 * session.run busy in native code for as long as the iterations take (about
 * 10^6 per second on one core: the default of 10^12 runs for days).
 */
export function buildStallingModel(spec: StallingModelSpec): Uint8Array {
  const iterations = spec.iterations ?? 1e12;
  const threshold = spec.threshold ?? 0.99;
  const body = {
    name: 'spin',
    node: [
      { op_type: 'Identity', input: ['cond_in'], output: ['cond_out'] },
      { op_type: 'Add', input: ['acc_in', 'step'], output: ['acc_out'] },
    ],
    initializer: [floatTensor('step', [], new Float32Array([1]))],
    input: [scalarInfo('iter', INT64), scalarInfo('cond_in', BOOL), scalarInfo('acc_in', FLOAT)],
    output: [scalarInfo('cond_out', BOOL), scalarInfo('acc_out', FLOAT)],
  };
  const nodes: object[] = [
    { op_type: 'Shape', input: ['images'], output: ['shape'] },
    { op_type: 'Slice', input: ['shape', 'zero', 'one'], output: ['batch'] },
    { op_type: 'Concat', input: ['batch', 'rest'], output: ['target'], attribute: [{ name: 'axis', i: 0, type: ATTR_INT }] },
    { op_type: 'Expand', input: ['constant', 'target'], output: ['expanded'] },
    { op_type: 'ReduceMin', input: ['images'], output: ['min'], attribute: [{ name: 'keepdims', i: 0, type: ATTR_INT }] },
    { op_type: 'Greater', input: ['min', 'threshold'], output: ['white'] },
    { op_type: 'Cast', input: ['white'], output: ['white_i'], attribute: [{ name: 'to', i: INT64, type: ATTR_INT }] },
    { op_type: 'Mul', input: ['white_i', 'iterations'], output: ['trips'] },
    { op_type: 'Loop', input: ['trips', 'true', 'acc0'], output: ['acc'], attribute: [{ name: 'body', g: body, type: ATTR_GRAPH }] },
    { op_type: 'Mul', input: ['acc', 'nothing'], output: ['zeroed'] },
    { op_type: 'Add', input: ['expanded', 'zeroed'], output: ['output0'] },
  ];
  const trueRaw = { name: 'true', dims: [], data_type: BOOL, raw_data: Buffer.from([1]) };
  const iterationsRaw = Buffer.alloc(8);
  iterationsRaw.writeBigInt64LE(BigInt(iterations));
  const initializer: object[] = [
    int64Tensor('zero', [0]),
    int64Tensor('one', [1]),
    int64Tensor('rest', spec.outputShape),
    floatTensor('constant', [1, ...spec.outputShape], spec.output),
    floatTensor('threshold', [], new Float32Array([threshold])),
    { name: 'iterations', dims: [], data_type: INT64, raw_data: iterationsRaw },
    trueRaw,
    floatTensor('acc0', [], new Float32Array([0])),
    floatTensor('nothing', [], new Float32Array([0])),
  ];
  const model = {
    ir_version: 8,
    producer_name: 'sightline-tests',
    opset_import: [{ domain: '', version: 13 }],
    graph: {
      name: 'stalling',
      node: nodes,
      initializer,
      input: [valueInfo('images', ['batch', 3, spec.inputHeight, spec.inputWidth])],
      output: [valueInfo('output0', ['batch', ...spec.outputShape])],
    },
  };
  const err = ModelProto.verify(model);
  if (err) throw new Error(err);
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}

/** ONNX element types (onnx.proto TensorProto.DataType), for buildGraphModel. */
export const ONNX_ELEM = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
} as const;

export interface GraphValue {
  name: string;
  elemType: number;
  dims: (number | string)[];
}

/** Any small graph: nodes as in onnx.proto (attribute type 2 = INT), float or int64 initializers by name. */
export function buildGraphModel(spec: {
  nodes: object[];
  floats?: Record<string, { dims: number[]; values: number[] }>;
  int64s?: Record<string, number[]>;
  inputs: GraphValue[];
  outputs: GraphValue[];
}): Uint8Array {
  const info = (v: GraphValue) => ({
    name: v.name,
    type: { tensor_type: { elem_type: v.elemType, shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } },
  });
  const model = {
    ir_version: 8,
    producer_name: 'sightline-tests',
    opset_import: [{ domain: '', version: 13 }],
    graph: {
      name: 'graph',
      node: spec.nodes,
      initializer: [
        ...Object.entries(spec.floats ?? {}).map(([name, t]) => floatTensor(name, t.dims, new Float32Array(t.values))),
        ...Object.entries(spec.int64s ?? {}).map(([name, values]) => int64Tensor(name, values)),
      ],
      input: spec.inputs.map(info),
      output: spec.outputs.map(info),
    },
  };
  const err = ModelProto.verify(model);
  if (err) throw new Error(err);
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}
