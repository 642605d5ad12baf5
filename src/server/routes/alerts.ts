import type { FastifyInstance } from 'fastify';
import { createAlertEngine, type AlertEngine, type AlertState } from '../../alerts/index.js';
import { AlertHistorySchema, AlertListSchema } from '../api-schemas.js';

export interface AlertRoutesOptions {
  /**
   * The engine to serve. Without one, the plugin creates it from
   * `app.sightline` (config, metrics registry) and the app's logger, starts it,
   * and stops it when the app closes.
   */
  engine?: AlertEngine;
}

const STATES: readonly AlertState[] = ['inactive', 'pending', 'firing'];

/** GET /v1/alerts: every alert rule with its state, value and threshold. */
export async function alertRoutes(app: FastifyInstance, opts: AlertRoutesOptions = {}): Promise<void> {
  let engine = opts.engine;
  if (!engine) {
    const own = createAlertEngine({ config: app.sightline.config, registry: app.sightline.metrics.registry, logger: app.log });
    app.addHook('onClose', async () => own.stop());
    engine = own;
  }
  const alerts = engine;

  app.get<{ Querystring: { state?: string } }>(
    '/v1/alerts',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List alerts',
        description: 'Every alert rule with its state (inactive, pending, firing), last value and threshold; `state` filters (docs/alerts.md).',
        tags: ['monitoring'],
        querystring: {
          type: 'object',
          properties: { state: { type: 'string', enum: [...STATES] } },
          additionalProperties: false,
        },
        response: { 200: AlertListSchema },
      },
    },
    async function listAlerts(request) {
      const list = alerts.list();
      const state = request.query.state;
      return {
        alerts: state ? list.filter((a) => a.state === state) : list,
        eval_interval_ms: alerts.options.evalIntervalMs,
      };
    },
  );

  app.get<{ Querystring: { limit?: number } }>(
    '/v1/alerts/history',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Alert history',
        description:
          'The last state changes of the alert rules (pending, firing, resolved back to inactive), newest first: what happened while nobody looked. Kept in memory (alert_history_size, default 500): a restart starts it anew.',
        tags: ['monitoring'],
        querystring: {
          type: 'object',
          properties: { limit: { type: 'integer', minimum: 1, maximum: 100_000 } },
          additionalProperties: false,
        },
        response: { 200: AlertHistorySchema },
      },
    },
    async function alertHistory(request) {
      return { changes: alerts.history(request.query.limit) };
    },
  );
}
