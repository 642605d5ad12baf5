import { EventEmitter } from 'node:events';
import type { SightlineEvent } from '../protocol/events.js';
import type { CameraState, LineList } from '../protocol/lines.js';
import type { Verdict } from '../protocol/results.js';

/**
 * Verdicts as PLC registers carry them: 0 none yet, 1 OK, 2 NG, 3 CHECK (the image
 * is outside the model's quality envelope: a PLC that passes only on 1 never lets
 * such a part through).
 */
export const VERDICT_CODES: Record<Verdict, number> = { ok: 1, ng: 2, check: 3 };

/** Camera states as numbers: 0 unknown (no frame yet), 1 online, 2 stale, 3 offline. */
export const CAMERA_STATE_CODES: Record<CameraState, number> = { online: 1, stale: 2, offline: 3 };

/** One inspection as a PLC reads it. */
export interface PlcResult {
  /** Per line, from 1, counting every result this output has seen (wraps at 2^32). */
  inspectionId: number;
  requestId: string;
  camera: string;
  verdict: Verdict;
  defectCount: number;
  /** Distinct labels of the detections, in order of first appearance. */
  labels: string[];
  /** ISO time of the result. */
  at: string;
}

/**
 * A line as the PLC outputs (OPC UA, Modbus) show it: the newest result and
 * counts, the worst camera state, and a trigger/acknowledge handshake in the
 * style of industrial cameras (Cognex, Keyence):
 *
 * - `triggerReady` is true while a trigger would be taken: no trigger is being
 *   acknowledged and the result buffer has room.
 * - The PLC raises `trigger`; the line raises `triggerAck` and lowers
 *   `triggerReady`; the PLC lowers `trigger`; the line lowers `triggerAck`.
 *   (Images are pushed by the cameras: the trigger is counted and announced as
 *   'trigger', for a camera that a source takes its frame on.)
 * - Every result of the line goes into a FIFO buffer of `bufferSize`; the oldest
 *   one not yet acknowledged is presented (`presented`) with `resultsValid`. The
 *   PLC reads it and raises `resultsAck`; the line lowers `resultsValid` and drops
 *   it; the PLC lowers `resultsAck`; the next buffered result is then presented.
 *   A full buffer drops its oldest result (`dropped` counts them).
 *
 * Emits 'change' after every change, for the address space to follow, and
 * 'acknowledged' with each result the PLC took (what an output counts as sent).
 */
export class LineState extends EventEmitter<{ change: []; trigger: [count: number]; dropped: [result: PlcResult]; acknowledged: [result: PlcResult] }> {
  last: PlcResult | undefined;
  okCount = 0;
  ngCount = 0;
  checkCount = 0;
  /** 0 until a camera state is known. */
  cameraStateCode = 0;
  readonly #cameras = new Map<string, CameraState>();
  trigger = false;
  triggerAck = false;
  triggerCount = 0;
  resultsAck = false;
  resultsValid = false;
  dropped = 0;
  readonly #buffer: PlcResult[] = [];
  #nextId = 1;

  constructor(
    readonly line: string,
    readonly bufferSize: number,
  ) {
    super();
  }

  get triggerReady(): boolean {
    return !this.triggerAck && !this.trigger && this.#buffer.length < this.bufferSize;
  }

  /** The result the handshake presents (valid only while `resultsValid`). */
  get presented(): PlcResult | undefined {
    return this.resultsValid ? this.#buffer[0] : undefined;
  }

  /** Results waiting for the PLC, the presented one included. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** The camera states, worst first: offline > stale > online. */
  get cameras(): ReadonlyMap<string, CameraState> {
    return this.#cameras;
  }

  /** Takes a result or camera event of this line. */
  apply(event: SightlineEvent): void {
    if (event.type === 'camera') {
      this.#cameras.set(event.camera, event.state);
      this.cameraStateCode = Math.max(...[...this.#cameras.values()].map((s) => CAMERA_STATE_CODES[s]));
      this.emit('change');
      return;
    }
    if (event.type !== 'result') return;
    const { result } = event;
    const plc: PlcResult = {
      inspectionId: this.#nextId,
      requestId: result.request_id,
      camera: result.camera,
      verdict: result.verdict,
      defectCount: result.detections.length,
      labels: [...new Set(result.detections.map((d) => d.label))],
      at: event.at,
    };
    this.#nextId = this.#nextId >= 0xffff_ffff ? 1 : this.#nextId + 1;
    this.last = plc;
    if (plc.verdict === 'ok') this.okCount++;
    else if (plc.verdict === 'ng') this.ngCount++;
    else this.checkCount++;
    this.#buffer.push(plc);
    if (this.#buffer.length > this.bufferSize) {
      // The presented one is dropped too if the PLC has not acknowledged it: the newest results matter more.
      const lost = this.#buffer.shift() as PlcResult;
      this.dropped++;
      this.emit('dropped', lost);
    }
    if (!this.resultsAck) this.resultsValid = this.#buffer.length > 0;
    this.emit('change');
  }

  /** The PLC wrote `Trigger`. */
  setTrigger(value: boolean): void {
    if (value === this.trigger) return;
    if (value && this.triggerReady) {
      this.triggerAck = true;
      this.triggerCount++;
      this.emit('trigger', this.triggerCount);
    } else if (!value) {
      this.triggerAck = false;
    }
    this.trigger = value;
    this.emit('change');
  }

  /** The PLC wrote `ResultsAck`. */
  setResultsAck(value: boolean): void {
    if (value === this.resultsAck) return;
    this.resultsAck = value;
    if (value && this.resultsValid) {
      const taken = this.#buffer.shift() as PlcResult;
      this.resultsValid = false;
      this.emit('acknowledged', taken);
    } else if (!value) {
      this.resultsValid = this.#buffer.length > 0;
    }
    this.emit('change');
  }
}

/** The line states of an output, one per line, made on first use. */
export class LineStates {
  readonly #lines = new Map<string, LineState>();

  constructor(
    readonly bufferSize: number,
    private readonly onCreate: (state: LineState) => void = () => undefined,
  ) {}

  get(line: string): LineState {
    let state = this.#lines.get(line);
    if (!state) {
      state = new LineState(line, this.bufferSize);
      this.#lines.set(line, state);
      this.onCreate(state);
    }
    return state;
  }

  has(line: string): boolean {
    return this.#lines.has(line);
  }

  all(): IterableIterator<LineState> {
    return this.#lines.values();
  }
}

/**
 * Camera states from GET /v1/lines' list into the line states `stateOf` names
 * (undefined: a line the output does not show). Camera events only say what
 * changes from now on; a camera whose event came first is newer and kept.
 */
export function applyCameraList(list: LineList, stateOf: (line: string) => LineState | undefined): void {
  for (const line of list.lines) {
    const state = stateOf(line.line);
    if (!state) continue;
    for (const camera of line.cameras) {
      if (state.cameras.has(camera.camera)) continue;
      state.apply({
        type: 'camera',
        line: line.line,
        camera: camera.camera,
        state: camera.state,
        previous: null,
        at: camera.since,
        last_frame_at: camera.last_frame_at,
      });
    }
  }
}
