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
        i: { type: 'int64', id: 3 },
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
