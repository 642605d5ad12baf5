import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { ConfigError } from '../config/load.js';

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/**
 * The certificate and key that `tls_cert_file` and `tls_key_file` name, for
 * Fastify's `https` option (HTTPS and WSS on the same port); undefined when
 * neither is set. One without the other is refused by loadConfig already.
 */
export function tlsFiles(config: Pick<Config, 'tls_cert_file' | 'tls_key_file'>): TlsFiles | undefined {
  if (!config.tls_cert_file && !config.tls_key_file) return undefined;
  if (!config.tls_cert_file || !config.tls_key_file) {
    throw new ConfigError(
      `${config.tls_cert_file ? 'tls_cert_file' : 'tls_key_file'} is set without ${config.tls_cert_file ? 'tls_key_file' : 'tls_cert_file'}: HTTPS needs both`,
    );
  }
  const read = (key: 'tls_cert_file' | 'tls_key_file') => {
    try {
      return readFileSync(config[key]);
    } catch (err) {
      throw new ConfigError(`cannot read ${key} ${config[key]}: ${(err as Error).message}`);
    }
  };
  return { cert: read('tls_cert_file'), key: read('tls_key_file') };
}

/**
 * Spread into Fastify's options: `{ https: { cert, key } }` with TLS, else nothing.
 * Typed as `object` so that buildApp keeps its plain FastifyInstance type: an
 * https.Server offers the same API that the app uses of its server.
 */
export function httpsOption(config: Pick<Config, 'tls_cert_file' | 'tls_key_file'>): object {
  const files = tlsFiles(config);
  return files ? { https: files } : {};
}
