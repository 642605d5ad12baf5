/**
 * The desired replica count of a role from its load signals: pure functions and
 * a small stateful stabiliser, so a scripted series of inputs can be replayed in
 * a test exactly as the scaler sees it.
 */

export const ROLES = ['api', 'worker'] as const;
export type Role = (typeof ROLES)[number];

/** The signals that can ask for replicas. */
export const SIGNALS = ['queue', 'throughput', 'latency'] as const;
export type Signal = (typeof SIGNALS)[number];

/** Why a desired count is what it is: the signal that asked for most, a bound, or the stabilisation window holding it up. */
export type Reason = Signal | 'min_replicas' | 'max_replicas' | 'stabilization';

/** What the calculator reads for one role; null where the figure is unknown (that signal then does not vote). */
export interface RoleInputs {
  /** Processes of the role seen recently (0 when none). */
  replicas: number;
  /** Results per second of the role, all its processes together. */
  rate: number | null;
  /** Results per second one process of the role has been measured to sustain. */
  throughputPerReplica: number | null;
  /** p95 server time of the role's results, ms. */
  p95LatencyMs: number | null;
  /** Jobs waiting in the job queue: only the worker role reads it. */
  queueDepth: number | null;
}

export interface ScalingSettings {
  targetQueuePerWorker: number;
  targetLatencyMs: number;
  targetUtilization: number;
  minReplicas: number;
  maxReplicas: number;
  stabilizationWindowMs: number;
}

export interface Recommendation {
  /** The largest signal clamped to the bounds, before stabilisation. */
  replicas: number;
  reason: Reason;
  /** What each signal asks for; null where it does not vote. */
  signals: Record<Signal, number | null>;
}

/** A ratio that is a whole number up to float noise (3.0000000001) is that number, not one more. */
const ceil = (x: number) => Math.max(0, Math.ceil(x - 1e-9));

/** What the job queue asks for: one worker per `targetQueuePerWorker` jobs waiting (workers only). */
export function queueSignal(role: Role, inputs: RoleInputs, settings: ScalingSettings): number | null {
  if (role !== 'worker' || inputs.queueDepth === null) return null;
  return ceil(inputs.queueDepth / settings.targetQueuePerWorker);
}

/** What the rate asks for: enough replicas that each runs at the target share of its measured throughput. */
export function throughputSignal(inputs: RoleInputs, settings: ScalingSettings): number | null {
  const { rate, throughputPerReplica } = inputs;
  if (rate === null) return null;
  if (rate <= 0) return 0;
  if (throughputPerReplica === null || throughputPerReplica <= 0) return null;
  return ceil(rate / (throughputPerReplica * settings.targetUtilization));
}

/**
 * What the latency asks for: above the target, the current count grown in
 * proportion (as an HPA does with a utilisation metric); at or below it, no vote,
 * since a fast service says nothing about how few replicas would still be fast.
 */
export function latencySignal(inputs: RoleInputs, settings: ScalingSettings): number | null {
  const p95 = inputs.p95LatencyMs;
  if (p95 === null || p95 <= settings.targetLatencyMs) return null;
  return ceil(Math.max(1, inputs.replicas) * (p95 / settings.targetLatencyMs));
}

/** The largest of the signals, clamped to [min, max], with the reason. */
export function recommend(role: Role, inputs: RoleInputs, settings: ScalingSettings): Recommendation {
  const signals: Record<Signal, number | null> = {
    queue: queueSignal(role, inputs, settings),
    throughput: throughputSignal(inputs, settings),
    latency: latencySignal(inputs, settings),
  };
  let raw = 0;
  let winner: Signal | undefined;
  for (const signal of SIGNALS) {
    const value = signals[signal];
    if (value !== null && (winner === undefined || value > raw)) {
      raw = value;
      winner = signal;
    }
  }
  if (raw > settings.maxReplicas) return { replicas: settings.maxReplicas, reason: 'max_replicas', signals };
  if (winner === undefined || raw < settings.minReplicas) return { replicas: settings.minReplicas, reason: 'min_replicas', signals };
  return { replicas: raw, reason: winner, signals };
}

/**
 * Kubernetes HPA's scale-down stabilisation: the desired count is the highest
 * recommendation within the window, so it rises with the first higher one and
 * falls only once every higher one is older than the window.
 */
export class Stabilizer {
  readonly #windowMs: number;
  /** Recommendations within the window, oldest first. */
  #recent: { at: number; replicas: number }[] = [];

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /** Adds the recommendation made at `at` (epoch ms, not decreasing) and returns the desired count. */
  next(at: number, replicas: number): number {
    this.#recent.push({ at, replicas });
    // Older than the window: kept only when it is the newest (a zero window keeps just the current one).
    while (this.#recent.length > 1 && (this.#recent[0]?.at ?? at) <= at - this.#windowMs) this.#recent.shift();
    let desired = replicas;
    for (const r of this.#recent) desired = Math.max(desired, r.replicas);
    return desired;
  }
}

/** A recommendation through the stabiliser: the reason says when the window holds the count above it. */
export function stabilized(recommendation: Recommendation, stabilizer: Stabilizer, at: number): { replicas: number; reason: Reason } {
  const replicas = stabilizer.next(at, recommendation.replicas);
  return replicas > recommendation.replicas ? { replicas, reason: 'stabilization' } : { replicas, reason: recommendation.reason };
}
