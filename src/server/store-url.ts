import { join } from 'node:path';
import type { Config } from '../config/schema.js';

/** The configured result store URL; the embedded default is a SQLite file in the data dir. */
export function storeUrl(config: Config): string {
  return config.store_url || `sqlite:${join(config.data_dir, 'results.db')}`;
}
