import { createHash } from 'node:crypto';

/**
 * How a model's requests that name no version are shared among its versions.
 * Set at runtime (POST /v1/models/:name/traffic) and kept in the control table
 * that every process reads (src/models/), so replicas split alike.
 */
export interface TrafficSplit {
  /** The version that answers when nothing below picks another; absent: the newest READY one. */
  primary?: string;
  /** A share of requests to another version: by a stable hash of the request id, or of the line (a line then stays on one version). */
  canary?: { version: string; percent: number; by: 'request' | 'line' };
  /** A share of requests also run on this version, never returned: compared with the answer (sightline_shadow_agreement_ratio). */
  shadow?: { version: string; percent: number };
  /** Lines that always get one version. */
  pins?: Record<string, string>;
}

export type RouteRole = 'primary' | 'canary' | 'pinned';

/**
 * A stable bucket in [0, 10000) for a key: the same request id or line always
 * falls in the same bucket in every process, so a retried request or a line
 * meets the same version everywhere. md5 only spreads keys evenly here.
 */
export function bucketOf(key: string, salt = ''): number {
  return createHash('md5').update(salt).update(key).digest().readUInt32BE(0) % 10_000;
}

/** The version a split asks for (undefined: the primary), and why. */
export function pickVersion(split: TrafficSplit | undefined, key: { requestId: string; line?: string }): { version: string | undefined; role: RouteRole } {
  if (!split) return { version: undefined, role: 'primary' };
  const pinned = key.line !== undefined ? split.pins?.[key.line] : undefined;
  if (pinned !== undefined) return { version: pinned, role: 'pinned' };
  const canary = split.canary;
  if (canary && canary.percent > 0) {
    const basis = canary.by === 'line' ? (key.line ?? key.requestId) : key.requestId;
    if (bucketOf(basis, 'canary') < canary.percent * 100) return { version: canary.version, role: 'canary' };
  }
  return { version: split.primary, role: 'primary' };
}

/** The shadow version this request also runs on, if any (its own hash salt: independent of the canary's). */
export function shadowVersion(split: TrafficSplit | undefined, requestId: string): string | undefined {
  const shadow = split?.shadow;
  if (!shadow || shadow.percent <= 0) return undefined;
  return bucketOf(requestId, 'shadow') < shadow.percent * 100 ? shadow.version : undefined;
}

/** Checks a split against the model's versions on disk; returns the reasons it is wrong. */
export function splitProblems(split: TrafficSplit, versions: readonly string[]): string[] {
  const problems: string[] = [];
  const known = (what: string, v: string | undefined) => {
    if (v !== undefined && !versions.includes(v)) problems.push(`${what}: version "${v}" is not in the repository (${versions.join(', ') || 'none'})`);
  };
  known('primary', split.primary);
  known('canary', split.canary?.version);
  known('shadow', split.shadow?.version);
  for (const [line, v] of Object.entries(split.pins ?? {})) known(`pin of line "${line}"`, v);
  for (const [what, share] of [
    ['canary', split.canary?.percent],
    ['shadow', split.shadow?.percent],
  ] as const) {
    if (share !== undefined && !(share >= 0 && share <= 100)) problems.push(`${what}: percent must be within 0..100`);
  }
  return problems;
}
