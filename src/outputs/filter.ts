import type { SightlineEvent } from '../protocol/events.js';
import type { Verdict } from '../protocol/results.js';

/** Which events an output takes: lines (empty: all) and, for results, verdicts. */
export interface EventFilter {
  lines: ReadonlySet<string>;
  verdicts: ReadonlySet<Verdict>;
}

/** Splits a comma-separated config list, dropping blanks. */
export function splitList(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
}

export function eventFilter(lines: string, verdicts: string): EventFilter {
  return { lines: new Set(splitList(lines)), verdicts: new Set(splitList(verdicts) as Verdict[]) };
}

/** Lines filter every event; verdicts filter results only (camera and job events pass). */
export function passes(filter: EventFilter, event: SightlineEvent): boolean {
  if (filter.lines.size > 0 && !filter.lines.has(event.line)) return false;
  if (event.type === 'result' && !filter.verdicts.has(event.result.verdict)) return false;
  return true;
}
