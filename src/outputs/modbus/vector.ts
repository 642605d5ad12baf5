import type { IServiceVector } from 'modbus-serial';
import { illegalAddress } from './exception.js';
import type { ModbusMap } from './register-map.js';

/**
 * modbus-serial's service functions over the map. All are synchronous (fewer
 * parameters than the callback form), so a request is answered from one
 * consistent view: nothing else runs between the reads of one request.
 */
export function serviceVector(map: ModbusMap): IServiceVector {
  // FC 15 calls setCoil once per coil in one synchronous loop, and answers an
  // exception as soon as one throws: collecting the writes of that loop and
  // making them in a microtask keeps a write that names an unmapped coil from
  // half-happening. The answer goes out before the microtask, but the next
  // request is parsed in a later macrotask, so it sees the write.
  let batch: { writes: (() => void)[]; failed: boolean } | undefined;
  const setCoil = (address: number, value: boolean): void => {
    if (!batch) {
      const current = { writes: [] as (() => void)[], failed: false };
      batch = current;
      queueMicrotask(() => {
        batch = undefined;
        if (!current.failed) for (const write of current.writes) write();
      });
    }
    try {
      const write = map.coilWriter(address);
      batch.writes.push(() => write(value));
    } catch (err) {
      batch.failed = true;
      throw err;
    }
  };
  const registers = (table: string) => (address: number, count: number) => map.registers(table, address, count);
  const register = (table: string) => (address: number) => map.registers(table, address, 1)[0] as number;
  return {
    getCoil: (address: number) => map.coil(address),
    getDiscreteInput: (address: number) => map.discreteInput(address),
    getHoldingRegister: register('holding register'),
    getMultipleHoldingRegisters: registers('holding register'),
    getInputRegister: register('input register'),
    getMultipleInputRegisters: registers('input register'),
    setCoil,
    // Every register is read-only. Without these ServerTCP would not answer a
    // write at all and the PLC would wait for its timeout.
    setRegister: (address: number) => {
      throw illegalAddress('writable register', address);
    },
    setRegisterArray: (address: number) => {
      throw illegalAddress('writable register', address);
    },
  };
}
