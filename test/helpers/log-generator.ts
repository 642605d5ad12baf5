/**
 * A deterministic Sightline log with contents known by construction, for
 * `sightline logs analyze` tests. Lines look like the server's own (src/logger.ts:
 * ISO `time`, level label) or pino's defaults (epoch-ms `time`, numeric level).
 *
 * 100 completed requests, idx 0..99, request id `req-00NN`, duration idx+1 ms
 * (so the durations are exactly 1..100), each logged as request_start at its
 * start and request_success/request_failure at start + duration:
 *
 *   hour (UTC, 2024-05-01)  idx       start times
 *   08                      0..9      08:00:00 + j·6m
 *   09                      10..21    09:30:00 + j·10s  (the error burst)
 *                           22..49    09:00:00 + j·1m
 *   10                      50..74    10:00:00 + j·144s
 *   11                      75..79    11:00:00 + j·12m
 *   12                      80..94    12:00:00 + j·4m
 *   13                      95..97    13:00:00 + j·20m
 *   14                      98..99    14:00:00 + j·30m
 *
 * Production line: line-1/2/3 for idx % 3 = 0/1/2, except idx 98 ("none").
 * Failures (22):
 *   10..21  500 INTERNAL_ERROR (with err and stack)       /v1/detect
 *   50..52  503 OVERLOADED (error_message, no err)        /v1/detect
 *   53      503 QUEUE_FULL                                 /v1/jobs
 *   0,60,80 400 INVALID_REQUEST                            /v1/detect
 *   75,95   415 UNSUPPORTED_MEDIA_TYPE                     /v1/detect
 *   98      404 NOT_FOUND                                  unmatched, line "none"
 * idx 76..79 are POST /v1/jobs (202) with job_enqueued (job-00NN); job_done
 * 2 s later for 76 (ng), 77 (ok), 78 (ok), a duplicate job_done for 77 60 s
 * later, job_dead for 79 30 s later. Every other success is POST /v1/detect
 * (200) with a detection_result: ng for idx in NG_LABELS (labels as listed),
 * ok otherwise (labels from OK_LABELS, else none).
 * A server_listening line at 07:59:59.000 opens the log.
 */

export type TimeFormat = 'iso' | 'epoch';

export const DAY = '2024-05-01';
const at = (hms: string) => Date.parse(`${DAY}T${hms}Z`);

export const NG_LABELS: Record<number, string[]> = {
  3: ['scratch'],
  7: ['scratch', 'scratch'],
  25: ['crack'],
  33: ['scratch', 'dent'],
  41: ['crack'],
  62: ['scratch'],
  70: ['dent', 'crack'],
  85: ['scratch'],
  88: ['crack', 'crack', 'scratch'],
  91: ['scratch'],
};
export const OK_LABELS: Record<number, string[]> = { 4: ['dent'], 40: ['dent'] };

interface Failure {
  status: number;
  code: string;
  route?: string;
}

function failureOf(idx: number): Failure | undefined {
  if (idx >= 10 && idx <= 21) return { status: 500, code: 'INTERNAL_ERROR' };
  if (idx >= 50 && idx <= 52) return { status: 503, code: 'OVERLOADED' };
  if (idx === 53) return { status: 503, code: 'QUEUE_FULL', route: '/v1/jobs' };
  if ([0, 60, 80].includes(idx)) return { status: 400, code: 'INVALID_REQUEST' };
  if ([75, 95].includes(idx)) return { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' };
  if (idx === 98) return { status: 404, code: 'NOT_FOUND', route: 'unmatched' };
  return undefined;
}

/** Start time (epoch ms) of request idx. */
export function startOf(idx: number): number {
  const groups: [number, number, string, number][] = [
    // first idx, count, hour start, spacing in seconds
    [0, 10, '08:00:00', 360],
    [22, 28, '09:00:00', 60],
    [10, 12, '09:30:00', 10],
    [50, 25, '10:00:00', 144],
    [75, 5, '11:00:00', 720],
    [80, 15, '12:00:00', 240],
    [95, 3, '13:00:00', 1200],
    [98, 2, '14:00:00', 1800],
  ];
  for (const [first, count, hms, spacing] of groups) {
    if (idx >= first && idx < first + count) return at(hms) + (idx - first) * spacing * 1000;
  }
  throw new RangeError(`no request ${idx}`);
}

const LEVELS: Record<string, number> = { info: 30, warn: 40, error: 50 };

interface Entry {
  time: number;
  seq: number;
  fields: Record<string, unknown>;
  level: string;
  msg: string;
}

function render(e: Entry, format: TimeFormat): string {
  const head =
    format === 'iso'
      ? { level: e.level, time: new Date(e.time).toISOString(), service: 'sightline' }
      : { level: LEVELS[e.level], time: e.time, pid: 4242, hostname: 'line-pc', service: 'sightline' };
  return JSON.stringify({ ...head, ...e.fields, msg: e.msg });
}

/** The log's lines (no trailing newlines), in time order. */
export function generateLogLines(format: TimeFormat = 'iso'): string[] {
  const entries: Entry[] = [];
  let seq = 0;
  const push = (time: number, level: string, fields: Record<string, unknown>, msg: string) => entries.push({ time, seq: seq++, level, fields, msg });

  push(at('07:59:59'), 'info', { event: 'server_listening', address: [{ address: '0.0.0.0', family: 'IPv4', port: 8080 }] }, 'listening on 0.0.0.0:8080');
  for (let idx = 0; idx < 100; idx++) {
    const id = `req-${String(idx).padStart(4, '0')}`;
    const start = startOf(idx);
    const duration = idx + 1;
    const done = start + duration;
    const failure = failureOf(idx);
    const isJob = idx >= 76 && idx <= 79;
    const route = failure?.route ?? (isJob ? '/v1/jobs' : '/v1/detect');
    const line = idx === 98 ? 'none' : `line-${(idx % 3) + 1}`;
    push(
      start,
      'info',
      { request_id: id, event: 'request_start', method: route === 'unmatched' ? 'GET' : 'POST', url: route === 'unmatched' ? '/v1/nope' : route },
      'request start',
    );
    const fields = { request_id: id, route, line, status: failure?.status ?? (isJob ? 202 : 200), duration_ms: duration };
    if (failure) {
      const shed = failure.code === 'OVERLOADED';
      const level = failure.status >= 500 && failure.status !== 503 ? 'error' : shed ? 'info' : 'warn';
      const error = shed
        ? { error_message: 'the inference queue of defects:1 is full' }
        : {
            err: {
              type: 'Error',
              message: `${failure.code.toLowerCase()} happened`,
              stack: `Error: ${failure.code.toLowerCase()} happened\n    at handler (src/server/routes/detect.ts:60:11)`,
              code: failure.code,
            },
          };
      push(done, level, { event: 'request_failure', ...fields, error_code: failure.code, ...error }, 'request failure');
      continue;
    }
    if (isJob) {
      const jobId = `job-${String(idx).padStart(4, '0')}`;
      push(done, 'info', { request_id: id, event: 'job_enqueued', job_id: jobId, line, duplicate: false }, 'job enqueued');
      push(done, 'info', { event: 'request_success', ...fields }, 'request success');
      if (idx === 79) {
        push(done + 30_000, 'warn', { event: 'job_dead', job_id: jobId, reason: 'failed', error: 'decode failed' }, `job ${jobId} dead: failed`);
      } else {
        const verdict = idx === 76 ? 'ng' : 'ok';
        push(done + 2000, 'info', { event: 'job_done', job_id: jobId, line, attempt: 1, verdict, duplicate: false, duration_ms: 20 }, 'job done');
        if (idx === 77)
          push(done + 60_000, 'info', { event: 'job_done', job_id: jobId, line, attempt: 2, verdict, duplicate: true, duration_ms: 21 }, 'job done');
      }
      continue;
    }
    const labels = NG_LABELS[idx] ?? OK_LABELS[idx] ?? [];
    const verdict = NG_LABELS[idx] ? 'ng' : 'ok';
    push(
      done,
      'info',
      { request_id: id, event: 'detection_result', line, model: 'defects', version: '1', verdict, detections: labels.length, labels },
      'detection result',
    );
    push(done, 'info', { event: 'request_success', ...fields }, 'request success');
  }
  entries.sort((a, b) => a.time - b.time || a.seq - b.seq);
  return entries.map((e) => render(e, format));
}

/** The whole log as text, one line each, newline-terminated. */
export function generateLog(format: TimeFormat = 'iso'): string {
  return generateLogLines(format).join('\n') + '\n';
}

/**
 * The log with malformed lines mixed in (numbers after insertion):
 *   11  not JSON
 *   52  JSON without time
 *   103 JSON with an unparseable time
 *   154 a JSON array
 *   205 a blank line (not malformed)
 *   290 a truncated last line, no trailing newline
 */
export function generateLogWithMalformed(format: TimeFormat = 'iso'): string {
  const lines = generateLogLines(format);
  const out: string[] = [];
  lines.forEach((line, i) => {
    out.push(line);
    const n = i + 1;
    if (n === 10) out.push('not json at all');
    if (n === 50) out.push('{"event":"request_success","status":200,"duration_ms":5000}');
    if (n === 100) out.push('{"time":"yesterday","event":"request_failure","status":500,"duration_ms":5000}');
    if (n === 150) out.push('[1,2,3]');
    if (n === 200) out.push('');
  });
  return out.join('\n') + '\n' + '{"level":"info","time":"2024-05-01T14:3';
}
