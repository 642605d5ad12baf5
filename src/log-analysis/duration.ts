/**
 * Durations ("500ms", "90s", "5m", "2h", "1d", "1h30m") and time specs for
 * --since/--until (an ISO 8601 timestamp, or a duration meaning "that long
 * before now").
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;

/** Milliseconds, or undefined when `text` is not a duration with units. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!WHOLE.test(trimmed)) return undefined;
  let total = 0;
  for (const match of trimmed.matchAll(PART)) total += Number(match[1]) * UNIT_MS[match[2]!]!;
  return total;
}

/** "5m", "1h30m", "250ms": the shortest exact spelling of a duration. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = ms;
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = UNIT_MS[unit]!;
    const n = Math.floor(rest / size);
    if (n > 0) {
      parts.push(`${n}${unit}`);
      rest -= n * size;
    }
  }
  if (rest > 0) parts.push(`${Math.round(rest * 1000) / 1000}ms`);
  return parts.join('');
}

// A date-time without a zone is read as UTC (reports are in UTC), not local time.
const NO_ZONE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?$/;
const ISO_LIKE = /^\d{4}-\d{2}-\d{2}/;

/**
 * Epoch milliseconds for a --since/--until value: a relative duration ("2h":
 * two hours before `now`) or an ISO 8601 date or date-time ("2024-05-01",
 * "2024-05-01T10:00:00Z", "2024-05-01T12:00:00+02:00"; no zone means UTC).
 */
export function parseTimeSpec(text: string, now: number): number | undefined {
  const trimmed = text.trim();
  const relative = parseDuration(trimmed);
  if (relative !== undefined) return now - relative;
  if (!ISO_LIKE.test(trimmed)) return undefined;
  const ms = Date.parse(NO_ZONE.test(trimmed) ? `${trimmed}Z` : trimmed);
  return Number.isFinite(ms) ? ms : undefined;
}
