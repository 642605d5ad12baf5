/** Modbus exception codes this server answers (Modbus Application Protocol v1.1b3, 7). */
export const ILLEGAL_DATA_ADDRESS = 0x02;

/**
 * An error that modbus-serial's ServerTCP turns into a Modbus exception
 * response: it reads `modbusErrorCode` from whatever a service function throws
 * (anything else becomes 04, server device failure).
 */
export class ModbusException extends Error {
  constructor(
    readonly modbusErrorCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'ModbusException';
  }
}

export function illegalAddress(table: string, address: number): ModbusException {
  return new ModbusException(ILLEGAL_DATA_ADDRESS, `no ${table} at address ${address}`);
}
