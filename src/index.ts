/**
 * The `sightline` package entry: the client SDK and its types. The server itself is
 * the `sightline` command (`sightline serve`), not an import.
 *
 * @example
 * ```ts
 * import { SightlineClient } from 'sightline';
 * const client = new SightlineClient({ baseUrl: 'http://127.0.0.1:8080' });
 * ```
 * @packageDocumentation
 */
export * from './client/index.js';
