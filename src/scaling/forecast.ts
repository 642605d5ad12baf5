import { ROLES, type Role, type ScalingSettings } from './calculator.js';

export const HOUR_MS = 3_600_000;
export const SLOTS_PER_WEEK = 168;
/** The forecast: six steps of five minutes. */
export const FORECAST_STEP_MS = 300_000;
export const FORECAST_STEPS = 6;
/** How fast the gap between the recent level and the profile fades out over the forecast (e-folding time). */
export const LEVEL_DECAY_MS = 30 * 60_000;
/** Within a step, the profile is read once a minute (so a step across an hour boundary weighs both hours). */
const SAMPLE_MS = 60_000;

/**
 * The hour-of-week slot of a time in the process's local time zone (`TZ`):
 * Monday 00:00–01:00 is 0, Sunday 23:00–24:00 is 167. Local, because shifts
 * follow the factory's clock, daylight saving included.
 */
export function hourOfWeek(t: number): number {
  const d = new Date(t);
  return ((d.getDay() + 6) % 7) * 24 + d.getHours();
}

/** Results of one stored bucket by role; `covered` false where no process recorded (the service was down). */
export interface ProfileBucket {
  bucketMs: number;
  results: Record<Role, number>;
}

/**
 * Mean results per second of each role per hour-of-week slot: the results in
 * the slot's buckets over every week kept, divided by the time those buckets
 * cover. Only buckets some process recorded count, so an outage is a gap, not
 * a quiet hour.
 */
export class WeeklyProfile {
  readonly #sums: Record<Role, Float64Array> = { api: new Float64Array(SLOTS_PER_WEEK), worker: new Float64Array(SLOTS_PER_WEEK) };
  readonly #coveredMs = new Float64Array(SLOTS_PER_WEEK);
  readonly #weeks = new Set<number>();

  constructor(buckets: Iterable<ProfileBucket>, resolutionMs: number) {
    for (const b of buckets) {
      const slot = hourOfWeek(b.bucketMs);
      for (const role of ROLES) (this.#sums[role][slot] as number) += b.results[role];
      (this.#coveredMs[slot] as number) += resolutionMs;
      this.#weeks.add(Math.floor(b.bucketMs / (7 * 24 * HOUR_MS)));
    }
  }

  /** Mean rate of the role in the slot of time t; null when no stored bucket covers that slot. */
  rate(role: Role, t: number): number | null {
    const slot = hourOfWeek(t);
    const covered = this.#coveredMs[slot] ?? 0;
    return covered > 0 ? (this.#sums[role][slot] ?? 0) / (covered / 1000) : null;
  }

  /** Distinct calendar weeks (since the epoch) with any bucket. */
  get weeks(): number {
    return this.#weeks.size;
  }

  /** Slots with data, of 168. */
  get coveredSlots(): number {
    return this.#coveredMs.filter((ms) => ms > 0).length;
  }
}

export interface ForecastStep {
  from: number;
  to: number;
  /** Expected results per second by role; null when neither the profile nor the recent level knows. */
  rate: Record<Role, number | null>;
  /** Replicas the throughput signal would ask for at that rate, clamped; null without a measured throughput. */
  desired: Record<Role, number | null>;
}

export interface ForecastInputs {
  now: number;
  profile: WeeklyProfile;
  /** The rate of each role now (null: unknown). */
  recent: Record<Role, number | null>;
  /** Measured throughput per replica of each role (null: unknown). */
  throughputPerReplica: Record<Role, number | null>;
  settings: ScalingSettings;
}

/**
 * The expected rate at t: the profile, shifted by how far the recent level is
 * from the profile now, that gap fading out with LEVEL_DECAY_MS. Without a
 * profile for t, the recent level; without either, null.
 */
export function expectedRate(role: Role, t: number, inputs: ForecastInputs): number | null {
  const base = inputs.profile.rate(role, t);
  const recent = inputs.recent[role];
  if (base === null) return recent;
  const nowBase = inputs.profile.rate(role, inputs.now);
  if (recent === null || nowBase === null) return base;
  const gap = (recent - nowBase) * Math.exp(-(t - inputs.now) / LEVEL_DECAY_MS);
  return Math.max(0, base + gap);
}

/** Six five-minute steps from now: the mean expected rate of each and the replicas it needs. */
export function forecast(inputs: ForecastInputs): ForecastStep[] {
  const { settings } = inputs;
  const steps: ForecastStep[] = [];
  for (let i = 0; i < FORECAST_STEPS; i++) {
    const from = inputs.now + i * FORECAST_STEP_MS;
    const to = from + FORECAST_STEP_MS;
    const rate = { api: null, worker: null } as Record<Role, number | null>;
    const desired = { api: null, worker: null } as Record<Role, number | null>;
    for (const role of ROLES) {
      let sum = 0;
      let n = 0;
      for (let t = from + SAMPLE_MS / 2; t < to; t += SAMPLE_MS) {
        const r = expectedRate(role, t, inputs);
        if (r === null) continue;
        sum += r;
        n++;
      }
      if (n === 0) continue;
      const mean = sum / n;
      rate[role] = Math.round(mean * 1000) / 1000;
      const capacity = inputs.throughputPerReplica[role];
      if (capacity !== null && capacity > 0) {
        const need = Math.max(0, Math.ceil(mean / (capacity * settings.targetUtilization) - 1e-9));
        desired[role] = Math.min(settings.maxReplicas, Math.max(settings.minReplicas, need));
      }
    }
    steps.push({ from, to, rate, desired });
  }
  return steps;
}
