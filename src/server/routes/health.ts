import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { LivenessSchema, ReadinessSchema } from '../api-schemas.js';
import type { DependencyStatus } from '../../health/dependency-monitor.js';

interface Check {
  name: string;
  status: 'pass' | 'fail';
  /** Whether this check decides readiness. */
  critical: boolean;
  /** Models: LOADING, READY, FAILED; other dependencies: starting, up, down. */
  state?: string;
  reason?: string;
  detail?: string;
  /** When the state last changed. */
  since?: string;
  last_checked?: string;
  test_inference?: { ok: boolean; at: string; duration_ms: number; reason?: string };
}

function dependencyCheck(s: DependencyStatus): Check {
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

/** No query parameters: unknown ones are refused (400 INVALID_REQUEST), as on every route. */
const NoQuery = Type.Object({}, { additionalProperties: false });

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const { models, health } = app.sightline;

  // Liveness only says the event loop answers; it must stay cheap.
  app.get(
    '/livez',
    {
      config: { role: 'public' },
      schema: {
        summary: 'Liveness',
        description: 'The process answers; nothing else is checked, so it stays cheap. Not rate limited.',
        tags: ['health'],
        querystring: NoQuery,
        response: { 200: LivenessSchema },
      },
    },
    async function livez() {
      return { status: 'ok' };
    },
  );

  // Reads states the dependency monitor and the model repository keep current: no
  // probe runs here, so a black-holed database cannot make the probe itself hang.
  app.get(
    '/readyz',
    {
      config: { role: 'public' },
      schema: {
        summary: 'Readiness',
        description:
          'Ready when the default model is READY and passes its test inference and every critical dependency (store, queue broker, free disk) is up. Reads states kept current in the background: no probe runs on the request. Not rate limited.',
        tags: ['health'],
        querystring: NoQuery,
        response: {
          200: { ...ReadinessSchema, description: 'Ready; every check with its state' },
          503: { ...ReadinessSchema, description: 'Not ready (Retry-After): waiting_for and reason name the failing critical checks' },
        },
      },
    },
    async function readyz(_request, reply) {
      const checks: Check[] = [];
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
      checks.push(...health.monitor.statuses().map(dependencyCheck));
      const waiting = checks.filter((c) => c.critical && c.status === 'fail');
      const ready = waiting.length === 0;
      if (!ready) reply.status(503).header('retry-after', '1');
      return {
        status: ready ? 'ready' : 'not_ready',
        ...(ready ? {} : { waiting_for: waiting.map((c) => c.name), reason: waiting.map((c) => `${c.name}: ${c.reason ?? c.state}`).join('; ') }),
        checks,
      };
    },
  );
}
