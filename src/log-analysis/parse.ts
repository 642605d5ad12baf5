/**
 * One pino JSON line → the fields the analyzer reads. Accepts both pino's
 * defaults (`time` in epoch ms, numeric `level`) and Sightline's logger
 * (ISO `time`, level label).
 */

export interface LogRecord {
  /** Epoch milliseconds. */
  time: number;
  event?: string;
  request_id?: string;
  route?: string;
  line?: string;
  status?: number;
  duration_ms?: number;
  error_code?: string;
  verdict?: string;
  /** detection_result: one entry per detection (a label may repeat). */
  labels?: string[];
  /** job_done / job_enqueued: a redelivery or a repeated Idempotency-Key. */
  duplicate?: boolean;
}

export type MalformedReason = 'invalid JSON' | 'not an object' | 'no time' | 'bad time';

export type ParsedLine = { ok: true; record: LogRecord } | { ok: false; reason: MalformedReason };

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string' && v.trim() !== '') {
    const n = Number(v);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

/** Epoch ms from pino's `time`: a number (epoch ms) or a date string. */
export function parseTime(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string') {
    const ms = Date.parse(v);
    return Number.isFinite(ms) ? ms : undefined;
  }
  return undefined;
}

export function parseLine(text: string): ParsedLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'invalid JSON' };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { ok: false, reason: 'not an object' };
  const obj = value as Record<string, unknown>;
  if (obj.time === undefined || obj.time === null) return { ok: false, reason: 'no time' };
  const time = parseTime(obj.time);
  if (time === undefined) return { ok: false, reason: 'bad time' };
  const record: LogRecord = { time };
  const event = str(obj.event);
  if (event !== undefined) record.event = event;
  const requestId = str(obj.request_id) ?? str(obj.reqId);
  if (requestId !== undefined) record.request_id = requestId;
  const route = str(obj.route);
  if (route !== undefined) record.route = route;
  const line = str(obj.line);
  if (line !== undefined) record.line = line;
  const status = num(obj.status);
  if (status !== undefined) record.status = status;
  const duration = num(obj.duration_ms);
  if (duration !== undefined) record.duration_ms = duration;
  const code = str(obj.error_code);
  if (code !== undefined) record.error_code = code;
  const verdict = str(obj.verdict);
  if (verdict !== undefined) record.verdict = verdict;
  if (Array.isArray(obj.labels)) record.labels = obj.labels.filter((l): l is string => typeof l === 'string');
  if (typeof obj.duplicate === 'boolean') record.duplicate = obj.duplicate;
  return { ok: true, record };
}
