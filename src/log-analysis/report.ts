/**
 * The report of `sightline logs analyze`, as printed by --json. Field names and
 * nesting are stable; `report_version` changes when they do. Times are ISO 8601
 * UTC strings, durations milliseconds, lists are sorted as documented per field.
 */
import type { Finding } from './anomalies.js';
import type { LatencySummary } from './percentile.js';

/** 2: jobs.replayed added (and no longer counted in jobs.enqueued); a failure without error_code is filed under http_<status>. */
export const REPORT_VERSION = 2;

export interface SourceSummary {
  /** The path as given; "stdin" for "-". */
  name: string;
  /** Detected from the content (magic bytes 1f 8b), not from the name. */
  gzip: boolean;
  lines: number;
  malformed: number;
}

export interface MalformedExample {
  source: string;
  /** 1-based line number within the (decompressed) source. */
  line: number;
  reason: string;
  /** The line's first 120 characters. */
  text: string;
}

export interface LogReport {
  report_version: typeof REPORT_VERSION;
  sources: SourceSummary[];
  filter: { since: string | null; until: string | null };
  /** First and last `time` among the events kept (after --since/--until). */
  time_range: { first: string | null; last: string | null; duration_ms: number | null };
  input: {
    /** Every line read, blank and malformed included. */
    lines: number;
    blank: number;
    /** Parsed lines inside the time filter. */
    events: number;
    malformed: number;
    /** Parsed lines left out by --since/--until. */
    outside_range: number;
  };
  malformed_lines: { count: number; examples: MalformedExample[] };
  /** total = succeeded + failed (request_success / request_failure); started counts request_start. */
  requests: { started: number; total: number; succeeded: number; failed: number; success_rate: number | null };
  /** Over the duration_ms of request_success and request_failure; nearest-rank percentiles. */
  latency_ms: LatencySummary & { method: 'nearest-rank' };
  /** By route, sorted by route. */
  by_route: { route: string; requests: number; failures: number }[];
  /** By production line ("none" when a request named none), sorted by line. ok/ng from detection_result and non-duplicate job_done. */
  by_line: { line: string; requests: number; failures: number; ok: number; ng: number }[];
  verdicts: { ok: number; ng: number };
  /** From detection_result `labels` (one count per detection), by count descending, then label. */
  by_label: { label: string; count: number }[];
  errors: {
    /** request_failure error_code (when absent: http_<status>, or "unknown" without a status), by count descending, then code. */
    by_code: { code: string; count: number }[];
    /** request_failure HTTP status, by count descending, then status. */
    by_status: { status: number; count: number }[];
  };
  /** Completed requests per UTC hour, the top 5 by count descending, then hour. */
  busiest_hours: { hour: string; requests: number }[];
  /** The --top slowest completed requests, by duration descending, then time, then request id. */
  slowest: { request_id: string | null; route: string | null; line: string | null; status: number | null; duration_ms: number; time: string }[];
  /**
   * enqueued: job_enqueued of new jobs; replayed: job_enqueued with duplicate: true (a repeated
   * Idempotency-Key answered with the job it made before); done: non-duplicate job_done;
   * duplicates: redelivered job_done.
   */
  jobs: { enqueued: number; replayed: number; done: number; dead: number; duplicates: number };
  anomalies: {
    settings: {
      window: string;
      window_ms: number;
      error_threshold: number;
      slow_ms: number;
      slow_threshold: number;
      p95_ms: number;
      p95_min_samples: number;
      saturation_threshold: number;
    };
    findings: Finding[];
  };
  /** Lines per `event` value (events without one are not listed), sorted by name. */
  event_counts: Record<string, number>;
}
