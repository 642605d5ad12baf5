import type { DependencyStatus } from '../health/dependency-monitor.js';
import type { ModelRepository } from '../inference/repository.js';
import type { Health } from '../runtime.js';

/** One entry of /readyz's `checks` (ReadinessSchema in api-schemas.ts). */
export interface ReadinessCheck {
  name: string;
  status: 'pass' | 'fail';
  /** Whether this check decides readiness. */
  critical: boolean;
  /** Models: LOADING, READY, FAILED, UNLOADING, UNAVAILABLE; other dependencies: starting, up, down. */
  state?: string;
  reason?: string;
  detail?: string;
  /** When the state last changed. */
  since?: string;
  last_checked?: string;
  test_inference?: { ok: boolean; at: string; duration_ms: number; reason?: string };
}

export interface Readiness {
  ready: boolean;
  /** The /readyz body: 200 when ready, else 503 with Retry-After. */
  body: {
    status: 'ready' | 'not_ready';
    waiting_for?: string[];
    reason?: string;
    checks: ReadinessCheck[];
  };
}

export function dependencyCheck(s: DependencyStatus): ReadinessCheck {
  return {
    name: s.name,
    status: s.state === 'up' ? 'pass' : 'fail',
    critical: s.critical,
    state: s.state,
    ...(s.reason !== undefined ? { reason: s.reason } : s.state === 'starting' ? { reason: 'first check under way' } : {}),
    ...(s.detail !== undefined ? { detail: s.detail } : {}),
    since: s.since.toISOString(),
    ...(s.lastChecked ? { last_checked: s.lastChecked.toISOString() } : {}),
  };
}

function modelChecks(models: ModelRepository, health: Health): ReadinessCheck[] {
  const checks: ReadinessCheck[] = [];
  const def = models.defaultModel();
  let defaultKey: string | undefined;
  if ('error' in def) {
    checks.push({ name: 'default_model', status: 'fail', critical: true, reason: def.error });
  } else {
    try {
      const entry = models.find(def.ref);
      defaultKey = `${entry.name}:${entry.version}`;
    } catch (err) {
      checks.push({ name: 'default_model', status: 'fail', critical: true, reason: (err as Error).message });
    }
  }
  for (const entry of models.list()) {
    const key = `${entry.name}:${entry.version}`;
    // A version left out by its policy or unloaded on purpose is not meant to serve: no check (unless it is what the default model resolves to).
    if (entry.state === 'UNAVAILABLE' && key !== defaultKey) continue;
    const test = entry.state === 'READY' ? health.testInference.resultFor(entry) : undefined;
    const failing = test !== undefined && !test.ok;
    checks.push({
      name: `model:${key}`,
      status: entry.state === 'READY' && !failing ? 'pass' : 'fail',
      critical: key === defaultKey,
      state: entry.state,
      ...(entry.reason ? { reason: entry.reason } : failing ? { reason: `test inference failed: ${test.reason}` } : {}),
      since: entry.stateSince.toISOString(),
      ...(test
        ? { test_inference: { ok: test.ok, at: test.at.toISOString(), duration_ms: test.duration_ms, ...(test.reason ? { reason: test.reason } : {}) } }
        : {}),
    });
  }
  return checks;
}

/**
 * /readyz of a server or a worker: ready when the default model is READY and
 * passes its test inference and every critical dependency is up. It reads states
 * kept current in the background (no probe runs here, so a black-holed database
 * cannot make the probe itself hang). `extra` adds process-specific checks, such
 * as a worker's "draining" after SIGTERM.
 */
export function readiness(models: ModelRepository, health: Health, extra: readonly ReadinessCheck[] = []): Readiness {
  const checks = [...modelChecks(models, health), ...health.monitor.statuses().map(dependencyCheck), ...extra];
  const waiting = checks.filter((c) => c.critical && c.status === 'fail');
  const ready = waiting.length === 0;
  return {
    ready,
    body: {
      status: ready ? 'ready' : 'not_ready',
      ...(ready ? {} : { waiting_for: waiting.map((c) => c.name), reason: waiting.map((c) => `${c.name}: ${c.reason ?? c.state}`).join('; ') }),
      checks,
    },
  };
}
