import { parseArgs } from 'node:util';
import { analyzeLogs, DEFAULT_TOP } from '../log-analysis/analyze.js';
import { DEFAULT_ANOMALY_SETTINGS, type AnomalySettings } from '../log-analysis/anomalies.js';
import { formatDuration, parseDuration, parseTimeSpec } from '../log-analysis/duration.js';
import { formatText } from '../log-analysis/format-text.js';
import { REPORT_VERSION } from '../log-analysis/report.js';
import { checkReadable, fileSource, LogSourceError, streamSource, type LogSource } from '../log-analysis/source.js';

const D = DEFAULT_ANOMALY_SETTINGS;

export const LOGS_HELP = `Usage: sightline logs analyze FILE... [options]

Reads Sightline's pino JSON logs (plain or gzipped, detected by content; "-"
is standard input) and reports totals, success rate, latency, per-line and
per-label counts, error types, busiest hours, the slowest requests, jobs and
anomalies found over a sliding window. Malformed lines are counted and skipped.

Options:
  --since T                 keep events at or after T: ISO 8601 (no zone = UTC) or a
                            duration before now (30m, 2h, 1d, 1h30m)
  --until T                 keep events before T (exclusive), same forms
  --json                    print the report as JSON (stable shape, report_version ${REPORT_VERSION})
  --top N                   how many slowest requests to list [${DEFAULT_TOP}]
  --window D                sliding window of the anomaly rules [${formatDuration(D.window_ms)}]
  --error-threshold N       errors: failed requests in a window >= N [${D.error_threshold}]
  --slow-ms MS              a request slower than MS is slow [${D.slow_ms}]
  --slow-threshold N        slow_requests: slow requests in a window >= N [${D.slow_threshold}]
  --p95-ms MS               p95_latency: a window's p95 latency > MS [${D.p95_ms}]
  --p95-min-samples N       p95_latency: judge windows with at least N requests [${D.p95_min_samples}]
  --saturation-threshold N  saturation: OVERLOADED/QUEUE_FULL refusals in a window >= N [${D.saturation_threshold}]
                            (a threshold of 0 turns its rule off)
  -h, --help                show this help

Exit status: 0 report printed, 2 bad arguments or an unreadable file.
`;

const OPTIONS = {
  since: { type: 'string' },
  until: { type: 'string' },
  json: { type: 'boolean' },
  top: { type: 'string' },
  window: { type: 'string' },
  'error-threshold': { type: 'string' },
  'slow-ms': { type: 'string' },
  'slow-threshold': { type: 'string' },
  'p95-ms': { type: 'string' },
  'p95-min-samples': { type: 'string' },
  'saturation-threshold': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

class UsageError extends Error {}

function count(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value.trim())) throw new UsageError(`--${name} takes a whole number ≥ 0, not "${value}"`);
  return Number(value);
}

function millis(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`--${name} takes a number of milliseconds ≥ 0, not "${value}"`);
  return n;
}

function time(name: string, value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseTimeSpec(value, now);
  if (ms === undefined) throw new UsageError(`--${name} takes an ISO 8601 time (2024-05-01T10:00:00Z) or a duration before now (2h), not "${value}"`);
  return ms;
}

/** `sightline logs <subcommand>`; only `analyze` exists. */
export async function runLogs(
  argv: string[],
  io: { stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream; stdin?: NodeJS.ReadableStream; now?: () => number } = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const [sub, ...rest] = argv;
  if (sub === undefined) {
    stderr.write(LOGS_HELP);
    return 2;
  }
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    stdout.write(LOGS_HELP);
    return 0;
  }
  if (sub !== 'analyze') {
    stderr.write(`sightline logs: unknown subcommand "${sub}"\n\n${LOGS_HELP}`);
    return 2;
  }
  let sources: LogSource[];
  let options: Parameters<typeof analyzeLogs>[1];
  let json = false;
  try {
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: OPTIONS, allowPositionals: true, strict: true });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const { values, positionals } = parsed;
    if (values.help) {
      stdout.write(LOGS_HELP);
      return 0;
    }
    if (positionals.length === 0) throw new UsageError('name at least one log file (or "-" for standard input)');
    if (positionals.filter((p) => p === '-').length > 1) throw new UsageError('"-" (standard input) can be named only once');
    const now = (io.now ?? Date.now)();
    const windowMs = values.window === undefined ? D.window_ms : parseDuration(values.window);
    if (windowMs === undefined || !(windowMs > 0)) throw new UsageError(`--window takes a duration with a unit (30s, 5m, 1h), not "${values.window}"`);
    const anomalies: AnomalySettings = {
      window_ms: windowMs,
      error_threshold: count('error-threshold', values['error-threshold'], D.error_threshold),
      slow_ms: millis('slow-ms', values['slow-ms'], D.slow_ms),
      slow_threshold: count('slow-threshold', values['slow-threshold'], D.slow_threshold),
      p95_ms: millis('p95-ms', values['p95-ms'], D.p95_ms),
      p95_min_samples: count('p95-min-samples', values['p95-min-samples'], D.p95_min_samples),
      saturation_threshold: count('saturation-threshold', values['saturation-threshold'], D.saturation_threshold),
    };
    const since = time('since', values.since, now);
    const until = time('until', values.until, now);
    if (since !== undefined && until !== undefined && since >= until) throw new UsageError('--since must come before --until');
    options = { since, until, top: count('top', values.top, DEFAULT_TOP), anomalies };
    json = values.json === true;
    // Every file is checked before any is read: a typo fails fast, not after minutes of reading.
    for (const p of positionals) if (p !== '-') await checkReadable(p);
    const stdin = (io.stdin ?? process.stdin) as import('node:stream').Readable;
    sources = positionals.map((p) => (p === '-' ? streamSource('stdin', stdin) : fileSource(p)));
  } catch (err) {
    if (err instanceof UsageError) {
      stderr.write(`sightline logs analyze: ${err.message}\n\nRun "sightline logs analyze --help" for the options.\n`);
      return 2;
    }
    if (err instanceof LogSourceError) {
      stderr.write(`sightline logs analyze: cannot read ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  let report;
  try {
    report = await analyzeLogs(sources, options);
  } catch (err) {
    if (err instanceof LogSourceError) {
      stderr.write(`sightline logs analyze: cannot read ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  stdout.write(json ? JSON.stringify(report, null, 2) + '\n' : formatText(report));
  return 0;
}
