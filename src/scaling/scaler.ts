import type { Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import type { HistoryStore } from '../history/history-store.js';
import type { HistorySettings } from '../history/query.js';
import {
  ROLES,
  SIGNALS,
  Stabilizer,
  recommend,
  stabilized,
  type Reason,
  type Recommendation,
  type Role,
  type RoleInputs,
  type ScalingSettings,
} from './calculator.js';
import { forecast, type ForecastStep } from './forecast.js';
import { scalingMetrics, type ScalingMetrics } from './metrics.js';
import { ProfileSource } from './profile-source.js';
import { SignalReader } from './signals.js';

/** The current figures cover the last minute of complete fine buckets (at least one bucket). */
export const CURRENT_WINDOW_MS = 60_000;
/** The measured throughput per replica is the best fine bucket of the last hour. */
export const CAPACITY_WINDOW_MS = 3_600_000;
/** A fine bucket is written within about a second of its end (the recorder's tick); later ones are read next time. */
const FLUSH_GRACE_MS = 2_000;

export function scalingSettings(config: Config): ScalingSettings {
  return {
    targetQueuePerWorker: config.scaling_target_queue_per_worker,
    targetLatencyMs: config.scaling_target_latency_ms,
    targetUtilization: config.scaling_target_utilization,
    minReplicas: config.scaling_min_replicas,
    // A max below the min would leave no valid count: the min wins.
    maxReplicas: Math.max(config.scaling_min_replicas, config.scaling_max_replicas),
    stabilizationWindowMs: config.scaling_stabilization_window_ms,
  };
}

/** One role's outcome of an evaluation. */
export interface RoleDecision {
  inputs: RoleInputs;
  recommendation: Recommendation;
  /** After stabilisation: the figure of sightline_desired_replicas. */
  desired: number;
  reason: Reason;
}

export interface ScalingState {
  at: number;
  /** The span the current figures cover: [from, to). */
  window: { from: number; to: number };
  queueDepth: number | null;
  roles: Record<Role, RoleDecision>;
}

export interface ScalingForecast {
  /** Calendar weeks and hour-of-week slots the profile has data for. */
  weeks: number;
  coveredSlots: number;
  steps: ForecastStep[];
}

/** What the scaler logs with: pino's and Fastify's loggers both fit. */
export interface ScalingLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ScalerOptions {
  settings: ScalingSettings;
  intervalMs: number;
  history: { store: Pick<HistoryStore, 'read'>; settings: HistorySettings };
  /** Jobs waiting in the job queue; a failure leaves the queue signal out. */
  queueDepth: () => Promise<number>;
  registry: Registry;
  logger: ScalingLogger;
  now?: () => number;
}

/**
 * Computes the desired replica counts every interval from the history rows of
 * every process and the job queue, keeps sightline_desired_replicas current,
 * and answers GET /v1/scaling (with the forecast).
 */
export class Scaler {
  readonly settings: ScalingSettings;
  readonly intervalMs: number;
  readonly #o: ScalerOptions;
  readonly #now: () => number;
  readonly #metrics: ScalingMetrics;
  readonly #stabilizers: Record<Role, Stabilizer>;
  readonly #profiles: ProfileSource;
  readonly #signals = new SignalReader();
  #state: ScalingState | undefined;
  #forecast: ScalingForecast | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<ScalingState> | undefined;
  #failing = false;

  constructor(options: ScalerOptions) {
    this.#o = options;
    this.settings = options.settings;
    this.intervalMs = options.intervalMs;
    this.#now = options.now ?? Date.now;
    this.#metrics = scalingMetrics(options.registry);
    const window = options.settings.stabilizationWindowMs;
    this.#stabilizers = { api: new Stabilizer(window), worker: new Stabilizer(window) };
    this.#profiles = new ProfileSource({
      store: options.history.store,
      resolutionMs: options.history.settings.rollupResolutionMs,
      retentionMs: options.history.settings.rollupRetentionMs,
    });
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      this.evaluate().catch(() => undefined);
    }, this.intervalMs);
    this.#timer.unref();
    this.evaluate().catch(() => undefined);
  }

  /** Stops the timer and waits for an evaluation in progress (it reads the history store, which closes after). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  /** The last evaluation, or a first one now. */
  async current(): Promise<ScalingState> {
    return this.#state ?? this.evaluate();
  }

  /** The forecast of the last evaluation (refreshed with the profile), or one now. */
  async forecast(): Promise<ScalingForecast> {
    if (this.#forecast) return this.#forecast;
    return this.#makeForecast(await this.current());
  }

  /** One evaluation: reads the signals, updates the gauges; concurrent callers share one. Throws when the history cannot be read. */
  evaluate(): Promise<ScalingState> {
    this.#running ??= this.#evaluate()
      .then(
        (state) => {
          if (this.#failing) this.#o.logger.info({ event: 'scaling_recovered' }, 'scaling: signals readable again');
          this.#failing = false;
          return state;
        },
        (err: Error) => {
          // One warning per outage; the gauges keep their last values meanwhile.
          if (!this.#failing) this.#o.logger.warn({ event: 'scaling_failed', err }, `scaling: cannot read the signals: ${err.message}`);
          this.#failing = true;
          throw err;
        },
      )
      .finally(() => {
        this.#running = undefined;
      });
    return this.#running;
  }

  async #evaluate(): Promise<ScalingState> {
    const at = this.#now();
    const { resolutionMs, retentionMs } = this.#o.history.settings;
    const end = Math.floor((at - FLUSH_GRACE_MS) / resolutionMs) * resolutionMs;
    const currentFrom = end - Math.max(resolutionMs, Math.floor(CURRENT_WINDOW_MS / resolutionMs) * resolutionMs);
    const capacityFrom = end - Math.min(retentionMs, Math.max(CAPACITY_WINDOW_MS, end - currentFrom));
    const window = { resolutionMs, currentFrom, capacityFrom, end };
    const [rows, queueDepth] = await Promise.all([
      this.#o.history.store.read(resolutionMs, this.#signals.readFrom(window), end),
      this.#o.queueDepth().then(
        (depth) => depth,
        () => null,
      ),
    ]);
    const figures = this.#signals.figures(rows, window);
    const roles = {} as Record<Role, RoleDecision>;
    for (const role of ROLES) {
      const inputs: RoleInputs = { ...figures[role], queueDepth };
      const recommendation = recommend(role, inputs, this.settings);
      const { replicas, reason } = stabilized(recommendation, this.#stabilizers[role], at);
      roles[role] = { inputs, recommendation, desired: replicas, reason };
      this.#metrics.desired.set({ role }, replicas);
      for (const signal of SIGNALS) {
        const value = recommendation.signals[signal];
        if (value === null) this.#metrics.signal.remove({ role, signal });
        else this.#metrics.signal.set({ role, signal }, value);
      }
    }
    const state: ScalingState = { at, window: { from: currentFrom, to: end }, queueDepth, roles };
    this.#state = state;
    // The forecast gauge is best effort: a profile that cannot be read keeps the last one.
    await this.#makeForecast(state).catch(() => undefined);
    return state;
  }

  async #makeForecast(state: ScalingState): Promise<ScalingForecast> {
    const profile = await this.#profiles.profile(state.at);
    const steps = forecast({
      now: state.at,
      profile,
      recent: { api: state.roles.api.inputs.rate, worker: state.roles.worker.inputs.rate },
      throughputPerReplica: { api: state.roles.api.inputs.throughputPerReplica, worker: state.roles.worker.inputs.throughputPerReplica },
      settings: this.settings,
    });
    for (const role of ROLES) {
      const values = steps.map((s) => s.desired[role]).filter((v): v is number => v !== null);
      if (values.length > 0) this.#metrics.forecast.set({ role }, Math.max(...values));
      else this.#metrics.forecast.remove({ role });
    }
    this.#forecast = { weeks: profile.weeks, coveredSlots: profile.coveredSlots, steps };
    return this.#forecast;
  }
}
