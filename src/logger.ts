import { pino, type Logger, type DestinationStream } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type LogFormat = 'auto' | 'json' | 'pretty';

/**
 * JSON lines with ISO timestamps. Each line carries an `event` field so that
 * `sightline logs analyze` and log pipelines can filter without parsing messages.
 * `pretty` (or `auto` on a terminal) renders the same records for people; JSON stays
 * the default wherever stdout is not a terminal, so pipelines never get pretty lines.
 */
export function createLogger(level: string, destination?: DestinationStream, format: LogFormat = 'json'): Logger {
  const pretty = format === 'pretty' || (format === 'auto' && destination === undefined && process.stdout.isTTY === true);
  return pino(
    {
      level,
      base: { service: 'sightline' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pretty ? prettyStream(destination) : destination,
  );
}

function prettyStream(destination: DestinationStream | undefined): DestinationStream {
  const toTerminal = destination === undefined && process.stdout.isTTY === true;
  return PinoPretty({
    destination: destination ?? 1,
    // Synchronous: the CLI exits with process.exit(), which must not cut the last lines.
    sync: true,
    colorize: toTerminal,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'service',
    singleLine: true,
  });
}
