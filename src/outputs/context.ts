import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { LineList } from '../protocol/lines.js';
import type { OutputMetrics } from './metrics.js';
import type { Outbox } from './outbox.js';

/** What an output is built from (see outputsFromConfig). */
export interface OutputContext {
  config: Config;
  /** A child logger (`output: <name>` is for the output to add). */
  logger: Logger;
  metrics: OutputMetrics;
  /**
   * The output's durable outbox in the result store's database, bounded to `max`
   * waiting messages (dead letters to output_dead_letters_max).
   */
  outbox(name: string, max: number): Outbox;
  /** Every line with its cameras (GET /v1/lines), for status summaries and camera states at start. */
  lines(): Promise<LineList>;
  /** This process's instance name (host and pid), for client ids and status messages. */
  instance: string;
}
