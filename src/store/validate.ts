import { Errors } from '../errors.js';
import { decodeCursor, type Keyset } from './cursor.js';
import { DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, RESULT_SOURCES, VERDICTS, type NewResult, type ResultQuery, type StatsWindow } from './result-store.js';

/** A `ResultQuery` checked and reduced to what the SQL needs. */
export interface ListFilter {
  line?: string;
  camera?: string;
  fromMs?: number;
  toMs?: number;
  verdict?: string;
  label?: string;
  limit: number;
  after?: Keyset;
}

const invalid = (why: string) => new Errors.INVALID_REQUEST(why);

function epochMs(name: string, value: Date | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw invalid(`${name} is not a valid time`);
  return value.getTime();
}

export function windowMs(window: StatsWindow): { fromMs?: number; toMs?: number } {
  return { fromMs: epochMs('from', window.from), toMs: epochMs('to', window.to) };
}

export function listFilter(query: ResultQuery): ListFilter {
  const { limit = DEFAULT_LIST_LIMIT } = query;
  if (!Number.isInteger(limit) || limit < 1) throw invalid(`limit must be a whole number from 1 to ${MAX_LIST_LIMIT}`);
  if (query.verdict !== undefined && !VERDICTS.includes(query.verdict)) throw invalid(`verdict must be one of ${VERDICTS.join(', ')}`);
  const filter: ListFilter = { ...windowMs(query), limit: Math.min(limit, MAX_LIST_LIMIT) };
  if (query.line !== undefined) filter.line = query.line;
  if (query.camera !== undefined) filter.camera = query.camera;
  if (query.verdict !== undefined) filter.verdict = query.verdict;
  if (query.label !== undefined) filter.label = query.label;
  if (query.cursor !== undefined) filter.after = decodeCursor(query.cursor);
  return filter;
}

/** Rejects what would store a row that the filters and statistics could not read back correctly. */
export function checkResult(result: NewResult): void {
  if (typeof result.request_id !== 'string' || result.request_id === '') throw invalid('request_id must be a non-empty string');
  if (typeof result.line !== 'string') throw invalid('line must be a string');
  if (typeof result.camera !== 'string' || result.camera === '') throw invalid('camera must be a non-empty string');
  if (!VERDICTS.includes(result.verdict)) throw invalid(`verdict must be one of ${VERDICTS.join(', ')}`);
  if (!RESULT_SOURCES.includes(result.source)) throw invalid(`source must be one of ${RESULT_SOURCES.join(', ')}`);
  if (!Array.isArray(result.detections)) throw invalid('detections must be an array');
  epochMs('created_at', result.created_at);
}
