/**
 * Which versions of a model are loaded, as Triton's `version_policy` says it:
 * `all`, `latest:N` (the N newest that can load) or `specific:1,2`.
 * `model_version_policy` holds a default and per-model overrides:
 * `latest:1; mirror=all; defects=specific:1,2`.
 */
export type VersionPolicy = { kind: 'all' } | { kind: 'latest'; count: number } | { kind: 'specific'; versions: string[] };

export interface VersionPolicies {
  default: VersionPolicy;
  perModel: Record<string, VersionPolicy>;
}

export function parseVersionPolicy(text: string): VersionPolicy {
  const t = text.trim();
  if (t === 'all') return { kind: 'all' };
  if (t === 'latest') return { kind: 'latest', count: 1 };
  const latest = /^latest:(\d+)$/.exec(t);
  if (latest) {
    const count = Number(latest[1]);
    if (count < 1) throw new Error(`"${t}": latest:N needs N ≥ 1`);
    return { kind: 'latest', count };
  }
  const specific = /^specific:(.+)$/.exec(t);
  if (specific) {
    const versions = specific[1]!.split(',').map((v) => v.trim());
    if (versions.some((v) => v === '')) throw new Error(`"${t}": specific:V1,V2 needs versions`);
    return { kind: 'specific', versions };
  }
  throw new Error(`"${t}" is not a version policy (all, latest, latest:N, specific:V1,V2)`);
}

/** Parses `model_version_policy`; throws with the reason. */
export function parseVersionPolicies(text: string): VersionPolicies {
  const policies: VersionPolicies = { default: { kind: 'latest', count: 1 }, perModel: {} };
  let sawDefault = false;
  for (const part of text.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) {
      if (sawDefault) throw new Error(`model_version_policy: more than one default ("${part.trim()}")`);
      policies.default = parseVersionPolicy(part);
      sawDefault = true;
    } else {
      const name = part.slice(0, eq).trim();
      if (!name) throw new Error(`model_version_policy: "${part.trim()}" names no model`);
      policies.perModel[name] = parseVersionPolicy(part.slice(eq + 1));
    }
  }
  return policies;
}

export function formatVersionPolicy(policy: VersionPolicy): string {
  if (policy.kind === 'all') return 'all';
  if (policy.kind === 'latest') return `latest:${policy.count}`;
  return `specific:${policy.versions.join(',')}`;
}

/**
 * The versions a policy selects from `candidates` (oldest first, each able to
 * load: a version that failed with the same files is left out, so that `latest:1`
 * keeps the serving version when a newer one is broken).
 */
export function selectVersions(policy: VersionPolicy, candidates: readonly string[]): string[] {
  if (policy.kind === 'all') return [...candidates];
  if (policy.kind === 'latest') return candidates.slice(-policy.count);
  return candidates.filter((v) => policy.versions.includes(v));
}
