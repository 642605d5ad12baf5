import { join } from 'node:path';
import { OPCUACertificateManager, OPCUAServer } from 'node-opcua';
import type { Config } from '../../config/schema.js';
import { securityOptions } from './security.js';

/** The namespace of the line objects: its index is looked up by clients (`ns=<idx>`), never assumed. */
export const NAMESPACE_URI = 'urn:sightline:outputs';

/** The PKI folder of the server: own certificate and key, trusted/rejected client certificates (docs/outputs/opcua.md). */
export function pkiFolder(config: Config): string {
  return join(config.data_dir, 'opcua-pki');
}

/**
 * An OPCUAServer for the config. Its certificate is made (self-signed, in
 * JavaScript: no OpenSSL binary, nothing downloaded) on first start in the PKI
 * folder. Unknown client certificates are refused: a Sign or SignAndEncrypt
 * client is let in once its certificate is moved from rejected/ to trusted/.
 */
export function createServer(config: Config): OPCUAServer {
  const root = pkiFolder(config);
  const security = securityOptions(config);
  return new OPCUAServer({
    port: config.opcua_port,
    serverCertificateManager: new OPCUACertificateManager({ rootFolder: root, automaticallyAcceptUnknownCertificate: false }),
    // X.509 user tokens are checked against their own folder; without it node-opcua would make one in the home directory.
    userCertificateManager: new OPCUACertificateManager({ rootFolder: join(root, 'users'), automaticallyAcceptUnknownCertificate: false }),
    serverCapabilities: { maxSessions: config.opcua_max_sessions },
    // node-opcua's default of 10 connections would refuse sessions well below maxSessions.
    maxConnectionsPerEndpoint: config.opcua_max_sessions,
    securityPolicies: security.securityPolicies,
    securityModes: security.securityModes,
    allowAnonymous: security.allowAnonymous,
    ...(security.userManager ? { userManager: security.userManager } : {}),
    serverInfo: { applicationUri: 'urn:sightline:server', productUri: 'urn:sightline', applicationName: { text: 'Sightline' } },
    buildInfo: { productName: 'Sightline', manufacturerName: 'Sightline' },
  });
}

/** The server's listening address as a message, for a start that failed on it. */
export function listenError(err: unknown, config: Config): Error {
  const message = err instanceof Error ? err.message : String(err);
  if (/EADDRINUSE/.test(message) || (err as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE') {
    return new Error(`the OPC UA server cannot listen on port ${config.opcua_port}: it is in use (opcua_port)`, { cause: err });
  }
  if (/EACCES/.test(message)) return new Error(`the OPC UA server may not listen on port ${config.opcua_port} (opcua_port): ${message}`, { cause: err });
  return new Error(`the OPC UA server did not start: ${message}`, { cause: err });
}
