import { createRequire } from 'node:module';
import type { AddressInfo, Server } from 'node:net';
import type { IServiceVector, ServerTCP as ServerTCPClass } from 'modbus-serial';

// The package's main module also loads serialport and its native binding, which
// a TCP server never needs (and which a slim image may lack): take the server alone.
const ServerTCP = createRequire(import.meta.url)('modbus-serial/servers/servertcp') as typeof ServerTCPClass;

/** ServerTCP's own net.Server: the library does not expose the bound address. */
type WithNetServer = ServerTCPClass & { _server: Server };

/** A listening Modbus TCP server (modbus-serial's ServerTCP) with its address and clients. */
export class ModbusTcpServer {
  #closed: Promise<void> | undefined;

  private constructor(
    private readonly server: WithNetServer,
    readonly host: string,
    readonly port: number,
  ) {}

  /** Listens on host:port (0: a free port); rejects with the reason when it cannot (a port in use). */
  static listen(vector: IServiceVector, host: string, port: number, onError: (err: Error | null) => void): Promise<ModbusTcpServer> {
    return new Promise((resolve, reject) => {
      // ServerTCP takes `port || 502`, so a numeric 0 would mean 502; net.Server
      // reads the string '0' as "any free port".
      const server = new ServerTCP(vector, { host, port: (port === 0 ? '0' : port) as number }) as WithNetServer;
      const failed = (err: Error) => reject(err);
      server.once('serverError', failed);
      server.once('initialized', () => {
        server.off('serverError', failed);
        server.on('serverError', onError);
        const bound = server._server.address() as AddressInfo;
        resolve(new ModbusTcpServer(server, host, bound.port));
      });
      // A reset client is the client's business; without a listener it would only be logged by debug().
      server.on('socketError', () => undefined);
      server.on('error', onError);
    });
  }

  get clients(): number {
    return this.server.socks.size;
  }

  get listening(): boolean {
    return !this.#closed && this.server._server.listening;
  }

  /** Stops listening and drops every client. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= new Promise((resolve) => this.server.close(() => resolve()));
    return this.#closed;
  }
}
