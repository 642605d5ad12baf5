import { type LineState, VERDICT_CODES, type PlcResult } from '../line-state.js';
import { illegalAddress } from './exception.js';

/**
 * The register map (docs/outputs/modbus.md). Line k of `modbus_lines` (from 0)
 * owns addresses k × BLOCK_SIZE onwards in each of the four tables; the offsets
 * below are within that block. Offsets and their meaning are a contract with PLC
 * programs: add at the end, never move one.
 */
export const BLOCK_SIZE = 100;

/** Modbus addresses are 16 bits: the blocks that fit. */
export const MAX_LINES = Math.floor(0x1_0000 / BLOCK_SIZE);

/** Coils: the bits the PLC writes (FC 1 reads them back, FC 5 and 15 write them). */
export const COIL = { trigger: 0, resultsAck: 1 } as const;
const COIL_COUNT = 2;

/** Discrete inputs (FC 2): read-only bits. */
export const DISCRETE = {
  triggerReady: 0,
  triggerAck: 1,
  resultsValid: 2,
  presentedOk: 3,
  presentedNg: 4,
  /** A camera of the line is stale or offline. */
  error: 5,
  lastOk: 6,
  lastNg: 7,
  /** CHECK: the image is outside the model's quality envelope (neither OK nor NG is set). */
  presentedCheck: 8,
  lastCheck: 9,
} as const;
const DISCRETE_COUNT = 10;

/**
 * Holding registers (FC 3), mirrored in input registers (FC 4): read-only
 * 16-bit words. 32-bit values take two registers, high word first.
 */
export const REGISTER = {
  presentedVerdict: 0,
  presentedDefects: 1,
  presentedId: 2,
  lastVerdict: 4,
  lastDefects: 5,
  lastId: 6,
  okCount: 8,
  ngCount: 10,
  cameraState: 12,
  buffered: 13,
  dropped: 14,
  triggerCount: 16,
  checkCount: 18,
} as const;
export const REGISTER_COUNT = 20;

const word = (n: number) => Math.min(n, 0xffff);
/** A count as two registers, high word first; counts past 2^32 wrap, as a PLC's UDINT would. */
const dword = (n: number): [number, number] => {
  const v = n >>> 0;
  return [v >>> 16, v & 0xffff];
};
const verdictCode = (r: PlcResult | undefined) => (r ? VERDICT_CODES[r.verdict] : 0);

/** Every register of a line's block, in offset order. */
export function lineRegisters(state: LineState): number[] {
  const presented = state.presented;
  const last = state.last;
  return [
    verdictCode(presented),
    word(presented?.defectCount ?? 0),
    ...dword(presented?.inspectionId ?? 0),
    verdictCode(last),
    word(last?.defectCount ?? 0),
    ...dword(last?.inspectionId ?? 0),
    ...dword(state.okCount),
    ...dword(state.ngCount),
    state.cameraStateCode,
    word(state.buffered),
    ...dword(state.dropped),
    ...dword(state.triggerCount),
    ...dword(state.checkCount),
  ];
}

export function lineDiscreteInputs(state: LineState): boolean[] {
  const presented = state.presented;
  return [
    state.triggerReady,
    state.triggerAck,
    state.resultsValid,
    presented?.verdict === 'ok',
    presented?.verdict === 'ng',
    // 2 stale, 3 offline: a camera the line counts on is not delivering.
    state.cameraStateCode >= 2,
    state.last?.verdict === 'ok',
    state.last?.verdict === 'ng',
    presented?.verdict === 'check',
    state.last?.verdict === 'check',
  ];
}

/** Where an address falls: the line's state and the offset in its block. */
interface Slot {
  state: LineState;
  offset: number;
}

/** The four Modbus tables over the line states, in `modbus_lines` order. */
export class ModbusMap {
  constructor(private readonly lines: readonly LineState[]) {}

  #slot(table: string, address: number, size: number): Slot {
    const state = this.lines[Math.floor(address / BLOCK_SIZE)];
    const offset = address % BLOCK_SIZE;
    if (!state || offset >= size) throw illegalAddress(table, address);
    return { state, offset };
  }

  coil(address: number): boolean {
    const { state, offset } = this.#slot('coil', address, COIL_COUNT);
    return offset === COIL.trigger ? state.trigger : state.resultsAck;
  }

  /** Checks a coil write without making it, so that a multi-coil write is all or nothing. */
  coilWriter(address: number): (value: boolean) => void {
    const { state, offset } = this.#slot('coil', address, COIL_COUNT);
    return offset === COIL.trigger ? (v) => state.setTrigger(v) : (v) => state.setResultsAck(v);
  }

  discreteInput(address: number): boolean {
    const { state, offset } = this.#slot('discrete input', address, DISCRETE_COUNT);
    return lineDiscreteInputs(state)[offset] as boolean;
  }

  /**
   * `count` registers from `address`, computed from one look at each line so that
   * a 32-bit pair, or a verdict and its inspection id, are never torn.
   */
  registers(table: string, address: number, count: number): number[] {
    const out: number[] = [];
    let block: { index: number; values: number[] } | undefined;
    for (let a = address; a < address + count; a++) {
      const { state, offset } = this.#slot(table, a, REGISTER_COUNT);
      const index = Math.floor(a / BLOCK_SIZE);
      if (block?.index !== index) block = { index, values: lineRegisters(state) };
      out.push(block.values[offset] as number);
    }
    return out;
  }
}
