import type { FastifyInstance } from 'fastify';

interface Check {
  name: string;
  status: 'pass' | 'fail';
  /** Whether this check decides readiness. */
  critical: boolean;
  state?: string;
  reason?: string;
  since?: string;
}

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const { models, store } = app.sightline;

  // Liveness only says the event loop answers; it must stay cheap.
  app.get('/livez', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
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
      checks.push({
        name: `model:${key}`,
        status: entry.state === 'READY' ? 'pass' : 'fail',
        critical: key === defaultKey,
        state: entry.state,
        ...(entry.reason ? { reason: entry.reason } : {}),
        since: entry.stateSince.toISOString(),
      });
    }
    try {
      await store.ping();
      checks.push({ name: `store:${store.kind}`, status: 'pass', critical: true });
    } catch (err) {
      checks.push({ name: `store:${store.kind}`, status: 'fail', critical: true, reason: (err as Error).message });
    }
    const ready = checks.every((c) => !c.critical || c.status === 'pass');
    if (!ready) reply.status(503).header('retry-after', '1');
    return { status: ready ? 'ready' : 'not_ready', checks };
  });
}
