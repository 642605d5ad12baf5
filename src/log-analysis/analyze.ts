/**
 * `sightline logs analyze` without the command line: streams every source
 * line by line, counts malformed lines, applies the time filter and folds
 * the rest into a LogReport.
 */
import { LogAggregator } from './aggregate.js';
import { DEFAULT_ANOMALY_SETTINGS, type AnomalySettings } from './anomalies.js';
import { parseLine } from './parse.js';
import { REPORT_VERSION, type LogReport, type MalformedExample, type SourceSummary } from './report.js';
import { readLines, type LogSource } from './source.js';

export interface AnalyzeOptions {
  /** Keep events with since ≤ time (epoch ms). */
  since?: number;
  /** Keep events with time < until (epoch ms). */
  until?: number;
  /** How many slowest requests to list (default 10). */
  top?: number;
  /** How many malformed lines to quote (default 10). */
  malformedExamples?: number;
  anomalies?: Partial<AnomalySettings>;
}

export const DEFAULT_TOP = 10;

export async function analyzeLogs(sources: LogSource[], options: AnalyzeOptions = {}): Promise<LogReport> {
  const settings: AnomalySettings = { ...DEFAULT_ANOMALY_SETTINGS, ...options.anomalies };
  const aggregator = new LogAggregator(options.top ?? DEFAULT_TOP);
  const maxExamples = options.malformedExamples ?? 10;
  const since = options.since ?? -Infinity;
  const until = options.until ?? Infinity;
  const input = { lines: 0, blank: 0, events: 0, malformed: 0, outside_range: 0 };
  const examples: MalformedExample[] = [];
  const summaries: SourceSummary[] = [];

  for (const source of sources) {
    const summary: SourceSummary = { name: source.name, gzip: false, lines: 0, malformed: 0 };
    summaries.push(summary);
    for await (const { number, text } of readLines(source, ({ gzip }) => (summary.gzip = gzip))) {
      input.lines += 1;
      summary.lines = number;
      if (text.trim() === '') {
        input.blank += 1;
        continue;
      }
      const parsed = parseLine(text);
      if (!parsed.ok) {
        input.malformed += 1;
        summary.malformed += 1;
        if (examples.length < maxExamples) examples.push({ source: source.name, line: number, reason: parsed.reason, text: text.slice(0, 120) });
        continue;
      }
      const { record } = parsed;
      if (record.time < since || record.time >= until) {
        input.outside_range += 1;
        continue;
      }
      input.events += 1;
      aggregator.add(record);
    }
  }

  const figures = aggregator.finish(settings);
  const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
  return {
    report_version: REPORT_VERSION,
    sources: summaries,
    filter: { since: iso(options.since), until: iso(options.until) },
    time_range: figures.time_range,
    input,
    malformed_lines: { count: input.malformed, examples },
    requests: figures.requests,
    latency_ms: figures.latency_ms,
    by_route: figures.by_route,
    by_line: figures.by_line,
    verdicts: figures.verdicts,
    by_label: figures.by_label,
    errors: figures.errors,
    busiest_hours: figures.busiest_hours,
    slowest: figures.slowest,
    jobs: figures.jobs,
    anomalies: figures.anomalies,
    event_counts: figures.event_counts,
  };
}
