// The alert changes this browser tab has seen (GET /v1/alerts keeps no history):
// kept at module level, so they survive moving between pages, and lost on reload.

export interface AlertChange {
  at: number;
  name: string;
  severity: string;
  from: string | null; // null: first seen
  to: string;
  value: number | null;
  unit: string;
}

const MAX = 500;
export const alertHistory: { changes: AlertChange[]; last: Map<string, string>; since: number } = {
  changes: [],
  last: new Map(),
  since: 0,
};

/** Records the state changes between the last answer and this one; returns true when something changed. */
export function recordAlerts(alerts: { name: string; severity: string; state: string; value: number | null; unit: string }[], at = Date.now()): boolean {
  if (!alertHistory.since) alertHistory.since = at;
  let changed = false;
  for (const a of alerts) {
    const before = alertHistory.last.get(a.name);
    if (before === a.state) continue;
    alertHistory.last.set(a.name, a.state);
    // The first sight of an inactive rule is not a change worth listing.
    if (before === undefined && a.state === 'inactive') continue;
    alertHistory.changes.unshift({ at, name: a.name, severity: a.severity, from: before ?? null, to: a.state, value: a.value, unit: a.unit });
    changed = true;
  }
  if (alertHistory.changes.length > MAX) alertHistory.changes.length = MAX;
  return changed;
}
