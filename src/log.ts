import { pino, type Logger, type DestinationStream } from 'pino';

/**
 * JSON lines with ISO timestamps. Each line carries an `event` field so that
 * `sightline logs analyze` and log pipelines can filter without parsing messages.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'sightline' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
