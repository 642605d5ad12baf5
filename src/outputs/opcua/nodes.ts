import { DataType, StatusCodes, Variant, VariantArrayType, type Namespace, type UAObject, type UAVariable } from 'node-opcua';
import { CAMERA_STATE_CODES, VERDICT_CODES, type LineState, type PlcResult } from '../line-state.js';

/** OPC UA's null DateTime (1601-01-01, encoded as 0): LastResultTime before the first result. */
export const NULL_DATE_TIME = new Date(Date.UTC(1601, 0, 1));

const CAMERA_STATE_NAMES: Record<number, string> = {
  0: 'unknown',
  ...Object.fromEntries(Object.entries(CAMERA_STATE_CODES).map(([name, code]) => [code, name])),
};

/** A client-writable handshake variable and what a write does to the line. */
export type Writable = 'trigger' | 'resultsAck';

type Value = string | number | boolean | Date | string[];

/** One variable of a line object: `ns=<idx>;s=<line>.<name>` (docs/outputs/opcua.md lists them all). */
interface VariableSpec {
  name: string;
  dataType: DataType;
  array?: boolean;
  writable?: Writable;
  description: string;
  /** `shown` is the result the handshake presented last (kept after ResultsAck: PLCs read it while ResultsValid). */
  value(state: LineState, shown: PlcResult | undefined): Value;
}

const u32 = (n: number) => n >>> 0;

/**
 * In update order: a change to several variables is applied in this order, so
 * a Result* value is already set when a subscriber sees ResultsValid rise.
 */
export const VARIABLES: readonly VariableSpec[] = [
  {
    name: 'LastVerdict',
    dataType: DataType.String,
    description: 'Verdict of the newest result: ok, ng, check, or empty before the first.',
    value: (s) => s.last?.verdict ?? '',
  },
  {
    name: 'LastVerdictCode',
    dataType: DataType.Int32,
    description: 'LastVerdict as a number: 0 none yet, 1 OK, 2 NG, 3 CHECK.',
    value: (s) => (s.last ? VERDICT_CODES[s.last.verdict] : 0),
  },
  { name: 'LastDefectCount', dataType: DataType.UInt32, description: 'Detections in the newest result.', value: (s) => u32(s.last?.defectCount ?? 0) },
  { name: 'LastLabels', dataType: DataType.String, array: true, description: 'Distinct labels of the newest result.', value: (s) => s.last?.labels ?? [] },
  {
    name: 'LastResultTime',
    dataType: DataType.DateTime,
    description: 'Time of the newest result (null DateTime before the first).',
    value: (s) => (s.last ? new Date(s.last.at) : NULL_DATE_TIME),
  },
  { name: 'LastInspectionId', dataType: DataType.UInt32, description: 'Inspection id of the newest result.', value: (s) => u32(s.last?.inspectionId ?? 0) },
  {
    name: 'LastRequestId',
    dataType: DataType.String,
    description: 'request_id of the newest result (GET /v1/results/{id}).',
    value: (s) => s.last?.requestId ?? '',
  },
  { name: 'LastCamera', dataType: DataType.String, description: 'Camera of the newest result.', value: (s) => s.last?.camera ?? '' },
  { name: 'OkCount', dataType: DataType.UInt32, description: 'OK results since the server started.', value: (s) => u32(s.okCount) },
  { name: 'NgCount', dataType: DataType.UInt32, description: 'NG results since the server started.', value: (s) => u32(s.ngCount) },
  {
    name: 'CheckCount',
    dataType: DataType.UInt32,
    description: "CHECK results (images outside the model's quality envelope) since the server started.",
    value: (s) => u32(s.checkCount),
  },
  {
    name: 'CameraState',
    dataType: DataType.String,
    description: 'Worst state of the line cameras: unknown, online, stale, offline.',
    value: (s) => CAMERA_STATE_NAMES[s.cameraStateCode] ?? 'unknown',
  },
  {
    name: 'CameraStateCode',
    dataType: DataType.Int32,
    description: 'CameraState as a number: 0 unknown, 1 online, 2 stale, 3 offline.',
    value: (s) => s.cameraStateCode,
  },
  {
    name: 'Trigger',
    dataType: DataType.Boolean,
    writable: 'trigger',
    description: 'Written by the PLC: raise to trigger, lower after TriggerAck.',
    value: (s) => s.trigger,
  },
  {
    name: 'TriggerAck',
    dataType: DataType.Boolean,
    description: 'Raised when a trigger is taken; lowered when the PLC lowers Trigger.',
    value: (s) => s.triggerAck,
  },
  { name: 'TriggerCount', dataType: DataType.UInt32, description: 'Triggers taken since the server started.', value: (s) => u32(s.triggerCount) },
  {
    name: 'InspectionId',
    dataType: DataType.UInt32,
    description: 'Inspection id of the presented result (per line, from 1).',
    value: (_s, r) => u32(r?.inspectionId ?? 0),
  },
  { name: 'ResultVerdict', dataType: DataType.String, description: 'Verdict of the presented result: ok, ng or check.', value: (_s, r) => r?.verdict ?? '' },
  {
    name: 'ResultVerdictCode',
    dataType: DataType.Int32,
    description: 'ResultVerdict as a number: 0 none, 1 OK, 2 NG, 3 CHECK.',
    value: (_s, r) => (r ? VERDICT_CODES[r.verdict] : 0),
  },
  { name: 'ResultDefectCount', dataType: DataType.UInt32, description: 'Detections in the presented result.', value: (_s, r) => u32(r?.defectCount ?? 0) },
  { name: 'ResultLabels', dataType: DataType.String, array: true, description: 'Distinct labels of the presented result.', value: (_s, r) => r?.labels ?? [] },
  { name: 'ResultRequestId', dataType: DataType.String, description: 'request_id of the presented result.', value: (_s, r) => r?.requestId ?? '' },
  {
    name: 'BufferedResults',
    dataType: DataType.UInt32,
    description: 'Results waiting for ResultsAck, the presented one included.',
    value: (s) => u32(s.buffered),
  },
  {
    name: 'DroppedResults',
    dataType: DataType.UInt32,
    description: 'Results dropped unacknowledged because the buffer was full.',
    value: (s) => u32(s.dropped),
  },
  {
    name: 'ResultsAck',
    dataType: DataType.Boolean,
    writable: 'resultsAck',
    description: 'Written by the PLC: raise after reading the presented result, lower after ResultsValid falls.',
    value: (s) => s.resultsAck,
  },
  {
    name: 'ResultsValid',
    dataType: DataType.Boolean,
    description: 'True while a result is presented in InspectionId and Result*.',
    value: (s) => s.resultsValid,
  },
  {
    name: 'TriggerReady',
    dataType: DataType.Boolean,
    description: 'True while a trigger would be taken (no trigger pending, buffer not full).',
    value: (s) => s.triggerReady,
  },
];

/** Equality of published values (arrays and dates by content), so that only real changes reach subscribers. */
function same(a: Value | undefined, b: Value): boolean {
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  return a === b;
}

/** The object of one line in the address space, kept in step with its LineState. */
export class LineNode {
  readonly object: UAObject;
  readonly #variables = new Map<string, { spec: VariableSpec; variable: UAVariable }>();
  readonly #published = new Map<string, Value>();
  #shown: PlcResult | undefined;

  constructor(
    namespace: Namespace,
    linesFolder: UAObject,
    readonly state: LineState,
    onWrite: (state: LineState, what: Writable, value: boolean) => void,
  ) {
    const line = state.line;
    this.object = namespace.addObject({ organizedBy: linesFolder, browseName: line, nodeId: `s=${line}`, description: `Line ${line}` });
    for (const spec of VARIABLES) {
      const initial = this.#valueOf(spec);
      const variant = () => this.#variant(spec, this.#valueOf(spec));
      const variable = namespace.addVariable({
        componentOf: this.object,
        browseName: spec.name,
        nodeId: `s=${line}.${spec.name}`,
        dataType: spec.dataType,
        valueRank: spec.array ? 1 : -1,
        ...(spec.array ? { arrayDimensions: [0] } : {}),
        accessLevel: spec.writable ? 'CurrentRead | CurrentWrite' : 'CurrentRead',
        userAccessLevel: spec.writable ? 'CurrentRead | CurrentWrite' : 'CurrentRead',
        // 0: a client asking for 0 gets every change as it happens, not a sample: a handshake pulse is never missed.
        minimumSamplingInterval: 0,
        description: spec.description,
        value: this.#variant(spec, initial),
      });
      if (spec.writable) {
        const writable = spec.writable;
        // Bound after creation: a write goes through the line's handshake, which decides the published values.
        variable.bindVariable(
          {
            get: variant,
            set: (v: Variant) => {
              if (typeof v.value !== 'boolean') return StatusCodes.BadTypeMismatch;
              onWrite(this.state, writable, v.value);
              return StatusCodes.Good;
            },
          },
          true,
        );
      }
      this.#variables.set(spec.name, { spec, variable });
      this.#published.set(spec.name, initial);
    }
  }

  /** Publishes what changed in the line state since the last call (monitored items fire on each). */
  sync(): void {
    this.#shown = this.state.presented ?? this.#shown;
    for (const { spec, variable } of this.#variables.values()) {
      const value = this.#valueOf(spec);
      if (same(this.#published.get(spec.name), value)) continue;
      this.#published.set(spec.name, value);
      variable.setValueFromSource(this.#variant(spec, value), StatusCodes.Good, new Date());
    }
  }

  #valueOf(spec: VariableSpec): Value {
    return spec.value(this.state, this.state.presented ?? this.#shown);
  }

  #variant(spec: VariableSpec, value: Value): Variant {
    return new Variant({ dataType: spec.dataType, arrayType: spec.array ? VariantArrayType.Array : VariantArrayType.Scalar, value });
  }
}
