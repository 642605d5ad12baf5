import type { FastifyInstance } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { History } from '../../history/index.js';
import { Scaler, SIGNALS, scalingSettings, type Role, type ScalingForecast, type ScalingState } from '../../scaling/index.js';
import { errorResponse } from '../api-schemas.js';

/** No query parameters: an unknown one is refused (400), as on every route. */
const NoQuery = Type.Object({}, { additionalProperties: false });

const nullable = (schema: TSchema) => Type.Union([schema, Type.Null()]);
const perRole = (schema: TSchema, description: string) => Type.Object({ api: schema, worker: schema }, { description });

const RoleInputsSchema = Type.Object({
  replicas: Type.Integer({ description: 'Processes of the role that recorded history rows in the window' }),
  rate: nullable(Type.Number({ description: 'Results per second of the role, all its processes; null: no process of the role seen' })),
  throughput_per_replica: nullable(
    Type.Number({ description: 'Most results per second one process of the role produced in one fine history bucket of the last hour; null: none' }),
  ),
  p95_latency_ms: nullable(Type.Number({ description: "p95 server time of the role's results in the window; null: no results" })),
});

const SIGNAL_REASONS = [...SIGNALS, 'min_replicas', 'max_replicas', 'stabilization'];

const RoleDesiredSchema = Type.Object({
  replicas: Type.Integer({ description: 'The value of sightline_desired_replicas{role}: the recommendation after scale-down stabilisation' }),
  reason: Type.Unsafe<string>({
    type: 'string',
    enum: SIGNAL_REASONS,
    description: 'What decided it: the signal that asked for most, a bound, or the stabilisation window holding an earlier, higher count',
  }),
  recommended: Type.Integer({ description: 'The largest signal, clamped to the bounds, before stabilisation' }),
  signals: Type.Object(
    {
      queue: nullable(Type.Integer({ description: 'Job queue depth ÷ scaling_target_queue_per_worker (workers only)' })),
      throughput: nullable(Type.Integer({ description: 'Rate ÷ (throughput per replica × scaling_target_utilization)' })),
      latency: nullable(Type.Integer({ description: 'Replicas × p95 ÷ scaling_target_latency_ms, when p95 is above the target' })),
    },
    { description: 'Replicas each signal asks for; null where it does not vote' },
  ),
});

const ForecastStepSchema = Type.Object({
  from: Type.String({ format: 'date-time' }),
  to: Type.String({ format: 'date-time' }),
  rate: perRole(nullable(Type.Number()), 'Expected results per second: the hour-of-week profile, shifted toward the recent level'),
  desired_replicas: perRole(
    nullable(Type.Integer()),
    'Replicas the throughput signal would ask for at that rate, within the bounds; null without a measured throughput',
  ),
});

export const ScalingSchema = Type.Object(
  {
    evaluated_at: Type.String({ format: 'date-time', description: 'When the figures were computed (every scaling_interval_ms)' }),
    interval_ms: Type.Integer(),
    window: Type.Object(
      { from: Type.String({ format: 'date-time' }), to: Type.String({ format: 'date-time' }) },
      { description: 'The fine history buckets the current figures cover' },
    ),
    settings: Type.Object({
      target_queue_per_worker: Type.Number(),
      target_latency_ms: Type.Number(),
      target_utilization: Type.Number(),
      min_replicas: Type.Integer(),
      max_replicas: Type.Integer(),
      stabilization_window_ms: Type.Integer(),
    }),
    inputs: Type.Object({
      queue_depth: nullable(Type.Integer({ description: 'Jobs waiting in the job queue; null when the queue cannot be read' })),
      roles: perRole(RoleInputsSchema, 'What each role was measured at'),
    }),
    desired: perRole(RoleDesiredSchema, 'Desired replicas per role'),
    forecast: Type.Object(
      {
        weeks: Type.Integer({ description: 'Calendar weeks of coarse history in the profile' }),
        covered_slots: Type.Integer({ description: 'Hour-of-week slots (of 168) with data' }),
        steps: Type.Array(ForecastStepSchema, { description: 'Six five-minute steps from now' }),
      },
      { description: 'The next 30 minutes from the hour-of-week profile of the stored history (docs/scaling.md)' },
    ),
  },
  { description: 'Scaling signals, desired replicas and the 30-minute forecast (docs/scaling.md)' },
);

export type ScalingAnswer = Static<typeof ScalingSchema>;

const iso = (t: number) => new Date(t).toISOString();

function answer(scaler: Scaler, state: ScalingState, forecast: ScalingForecast): ScalingAnswer {
  const s = scaler.settings;
  const inputs = (role: Role) => {
    const i = state.roles[role].inputs;
    return {
      replicas: i.replicas,
      rate: i.rate === null ? null : Math.round(i.rate * 1000) / 1000,
      throughput_per_replica: i.throughputPerReplica === null ? null : Math.round(i.throughputPerReplica * 1000) / 1000,
      p95_latency_ms: i.p95LatencyMs,
    };
  };
  const desired = (role: Role) => {
    const d = state.roles[role];
    return { replicas: d.desired, reason: d.reason, recommended: d.recommendation.replicas, signals: d.recommendation.signals };
  };
  return {
    evaluated_at: iso(state.at),
    interval_ms: scaler.intervalMs,
    window: { from: iso(state.window.from), to: iso(state.window.to) },
    settings: {
      target_queue_per_worker: s.targetQueuePerWorker,
      target_latency_ms: s.targetLatencyMs,
      target_utilization: s.targetUtilization,
      min_replicas: s.minReplicas,
      max_replicas: s.maxReplicas,
      stabilization_window_ms: s.stabilizationWindowMs,
    },
    inputs: {
      queue_depth: state.queueDepth,
      roles: { api: inputs('api'), worker: inputs('worker') },
    },
    desired: { api: desired('api'), worker: desired('worker') },
    forecast: {
      weeks: forecast.weeks,
      covered_slots: forecast.coveredSlots,
      steps: forecast.steps.map((step) => ({ from: iso(step.from), to: iso(step.to), rate: step.rate, desired_replicas: step.desired })),
    },
  };
}

export interface ScalingRouteOptions {
  /** Every process's history rows: the signals and the profile are read there. */
  history: Pick<History, 'store' | 'settings'>;
  /** The scaler to serve; without one the plugin builds it from app.sightline, starts it and stops it on close. */
  scaler?: Scaler;
}

/** GET /v1/scaling: the desired replica counts per role with their inputs and the forecast. */
export async function scalingRoutes(app: FastifyInstance, options: ScalingRouteOptions): Promise<void> {
  let scaler = options.scaler;
  if (!scaler) {
    const { config, metrics, queue } = app.sightline;
    const own = new Scaler({
      settings: scalingSettings(config),
      intervalMs: config.scaling_interval_ms,
      history: { store: options.history.store, settings: options.history.settings },
      queueDepth: () => queue.depth(),
      registry: metrics.registry,
      logger: app.log,
    });
    own.start();
    app.addHook('onClose', async () => own.stop());
    scaler = own;
  }
  const served = scaler;

  app.get(
    '/v1/scaling',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Scaling signals',
        description:
          'Desired replicas per role (api, worker) from the job queue depth, the throughput per replica and the p95 latency against their targets: the largest, within scaling_min_replicas..scaling_max_replicas, lowered only to the highest count of the last scaling_stabilization_window_ms; the same figures as sightline_desired_replicas. With a forecast of the next 30 minutes in five-minute steps from the hour-of-week profile of the stored history (docs/scaling.md).',
        tags: ['monitoring'],
        querystring: NoQuery,
        response: { 200: ScalingSchema, 503: errorResponse('STORE_UNAVAILABLE: the history tables cannot be read (Retry-After)') },
      },
    },
    async function getScaling() {
      const state = await served.current();
      return answer(served, state, await served.forecast());
    },
  );
}
