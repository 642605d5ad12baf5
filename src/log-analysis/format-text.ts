/** The human-readable rendering of a LogReport: short sections of aligned tables. */
import type { LogReport } from './report.js';

type Cell = string | number | null;

/** Left-aligned text, right-aligned numbers, two spaces between columns, indented by two. */
export function table(headers: string[], rows: Cell[][]): string[] {
  const text = rows.map((row) => row.map((c) => (c === null ? '-' : String(c))));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((row) => typeof row[i] === 'number' || row[i] === null));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((row) => row[i]!.length)));
  const render = (cells: string[]) =>
    '  ' +
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [render(headers), ...text.map(render)];
}

const pct = (rate: number | null) => (rate === null ? '-' : `${(rate * 100).toFixed(2)}%`);
const hour = (iso: string) => `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;

function section(title: string, body: string[], empty = '  (none)'): string[] {
  return ['', title, ...(body.length > 0 ? body : [empty])];
}

export function formatText(r: LogReport): string {
  const out: string[] = ['Sightline log report'];
  const sources = r.sources.map((s) => `${s.name} (${s.gzip ? 'gzip, ' : ''}${s.lines} lines)`).join(', ');
  out.push(`  sources      ${sources || '-'}`);
  if (r.filter.since || r.filter.until) out.push(`  filter       since ${r.filter.since ?? '-'}  until ${r.filter.until ?? '-'} (exclusive)`);
  out.push(
    r.time_range.first
      ? `  time range   ${r.time_range.first} .. ${r.time_range.last} (${((r.time_range.duration_ms ?? 0) / 3_600_000).toFixed(2)} h)`
      : '  time range   - (no events)',
  );
  const outside = r.filter.since || r.filter.until ? `, ${r.input.outside_range} outside the filter` : '';
  out.push(`  input        ${r.input.lines} lines: ${r.input.events} events, ${r.input.malformed} malformed, ${r.input.blank} blank${outside}`);

  const q = r.requests;
  out.push(
    '',
    'Requests',
    `  total ${q.total}   succeeded ${q.succeeded}   failed ${q.failed}   success rate ${pct(q.success_rate)}   (request_start: ${q.started})`,
  );
  const l = r.latency_ms;
  out.push(
    '',
    `Latency, ms (request_success + request_failure, nearest-rank, n=${l.count})`,
    l.count === 0 ? '  (no durations)' : `  mean ${l.mean}   p50 ${l.p50}   p95 ${l.p95}   p99 ${l.p99}   max ${l.max}`,
  );
  out.push(
    ...section(
      'By line',
      r.by_line.length
        ? table(
            ['LINE', 'REQUESTS', 'FAILURES', 'OK', 'NG'],
            r.by_line.map((x) => [x.line, x.requests, x.failures, x.ok, x.ng]),
          )
        : [],
    ),
  );
  out.push(
    ...section(
      'By route',
      r.by_route.length
        ? table(
            ['ROUTE', 'REQUESTS', 'FAILURES'],
            r.by_route.map((x) => [x.route, x.requests, x.failures]),
          )
        : [],
    ),
  );
  out.push(
    ...section(
      'Labels (detections)',
      r.by_label.length
        ? table(
            ['LABEL', 'COUNT'],
            r.by_label.map((x) => [x.label, x.count]),
          )
        : [],
    ),
  );
  out.push(
    ...section(
      'Errors by code',
      r.errors.by_code.length
        ? table(
            ['ERROR_CODE', 'COUNT'],
            r.errors.by_code.map((x) => [x.code, x.count]),
          )
        : [],
    ),
  );
  out.push(
    ...section(
      'Errors by HTTP status',
      r.errors.by_status.length
        ? table(
            ['STATUS', 'COUNT'],
            r.errors.by_status.map((x) => [String(x.status), x.count]),
          )
        : [],
    ),
  );
  out.push(
    ...section(
      'Busiest hours (UTC)',
      r.busiest_hours.length
        ? table(
            ['HOUR', 'REQUESTS'],
            r.busiest_hours.map((x) => [hour(x.hour), x.requests]),
          )
        : [],
    ),
  );
  out.push(
    ...section(
      `Slowest requests (top ${r.slowest.length})`,
      r.slowest.length
        ? table(
            ['DURATION_MS', 'REQUEST_ID', 'ROUTE', 'LINE', 'STATUS', 'TIME'],
            r.slowest.map((x) => [x.duration_ms, x.request_id, x.route, x.line, x.status === null ? null : String(x.status), x.time]),
          )
        : [],
    ),
  );
  const j = r.jobs;
  out.push('', 'Jobs', `  enqueued ${j.enqueued}   replayed ${j.replayed}   done ${j.done}   dead ${j.dead}   duplicate deliveries ${j.duplicates}`);
  const s = r.anomalies.settings;
  const off = (v: number, text: string) => (v > 0 ? text : 'off');
  out.push(
    ...section(
      `Anomalies (window ${s.window}; errors ${off(s.error_threshold, `>= ${s.error_threshold}`)}; slow > ${s.slow_ms} ms ${off(s.slow_threshold, `>= ${s.slow_threshold}`)}; p95 ${off(s.p95_ms, `> ${s.p95_ms} ms (n >= ${s.p95_min_samples})`)}; saturation ${off(s.saturation_threshold, `>= ${s.saturation_threshold}`)})`,
      r.anomalies.findings.length
        ? table(
            ['RULE', 'WINDOW_START', 'WINDOW_END', 'OBSERVED', 'THRESHOLD', 'MESSAGE'],
            r.anomalies.findings.map((f) => [f.rule, f.window_start, f.window_end, f.observed, f.threshold, f.message]),
          )
        : [],
      '  (no findings)',
    ),
  );
  if (r.malformed_lines.count > 0) {
    out.push('', `Malformed lines: ${r.malformed_lines.count} (skipped)`);
    out.push(
      ...table(
        ['SOURCE', 'LINE', 'REASON', 'TEXT'],
        r.malformed_lines.examples.map((e) => [e.source, e.line, e.reason, JSON.stringify(e.text)]),
      ),
    );
  }
  return out.join('\n') + '\n';
}
