import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';

/** A thing the server needs: probed on a timer, faster (with backoff) while it is down. */
export interface Dependency {
  /** `kind:detail`, e.g. `store:postgres`, `queue:amqp`, `disk:/var/lib/sightline`. */
  name: string;
  /** Whether readiness depends on it. */
  critical: boolean;
  /** Resolves (optionally with a detail for /readyz) when usable; rejects with the reason when not. */
  // biome-ignore lint/suspicious/noConfusingVoidType: a plain `() => Promise<void>` (e.g. store.ping) must fit too.
  probe(): Promise<string | void>;
}

export type DependencyState = 'starting' | 'up' | 'down';

export interface DependencyStatus {
  name: string;
  critical: boolean;
  state: DependencyState;
  /** When `state` last changed (start-up counts as a change). */
  since: Date;
  lastChecked?: Date;
  /** Why it is down (the probe's error), or the probe's detail while up. */
  reason?: string;
  detail?: string;
  /** Failed probes in a row. */
  failures: number;
}

export interface DependencyMonitorOptions {
  dependencies: readonly Dependency[];
  /** Time between probes while up. */
  intervalMs: number;
  /** First retry delay while down; doubles per failure up to retryMaxMs (±20 % jitter). */
  retryBaseMs: number;
  retryMaxMs: number;
  /** A probe slower than this counts as failed (a black-holed network never answers). */
  probeTimeoutMs?: number;
  logger: Logger;
}

interface Entry {
  dep: Dependency;
  status: DependencyStatus;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
  /** Ever up: before that a failure is "waiting for", after it an outage. */
  wasUp: boolean;
}

/**
 * Keeps the state of every dependency current for /readyz, the
 * `sightline_dependency_up` gauge and the logs. Written here rather than taken
 * from a library because what it needs (per-dependency backoff, state-change
 * times, start-up "waiting for" logs, picking a dependency up again without a
 * restart) is a few dozen lines around the probes that only this code base has.
 */
export class DependencyMonitor extends EventEmitter<{ change: [DependencyStatus] }> {
  readonly #entries = new Map<string, Entry>();
  readonly #o: DependencyMonitorOptions;
  readonly #startedAt = Date.now();
  #stopped = false;

  constructor(options: DependencyMonitorOptions) {
    super();
    this.#o = options;
    const now = new Date();
    for (const dep of options.dependencies) {
      this.#entries.set(dep.name, { dep, wasUp: false, status: { name: dep.name, critical: dep.critical, state: 'starting', since: now, failures: 0 } });
    }
  }

  /** Probes every dependency now, then keeps probing on its own schedule. */
  start(): void {
    for (const entry of this.#entries.values()) void this.#probe(entry);
  }

  /** Probes one dependency (or all) now; resolves when done. For tests and for callers that just saw a failure. */
  async checkNow(name?: string): Promise<void> {
    const entries = name === undefined ? [...this.#entries.values()] : [this.#entries.get(name)].filter((e): e is Entry => e !== undefined);
    await Promise.all(entries.map((e) => this.#probe(e)));
  }

  statuses(): DependencyStatus[] {
    return [...this.#entries.values()].map((e) => ({ ...e.status }));
  }

  /** Names of the critical dependencies that are not up. */
  waitingFor(): string[] {
    return [...this.#entries.values()].filter((e) => e.dep.critical && e.status.state !== 'up').map((e) => e.dep.name);
  }

  /** Watches one more dependency from now on (a source added while running); probed at once. */
  add(dep: Dependency): void {
    if (this.#entries.has(dep.name)) this.remove(dep.name);
    const entry: Entry = { dep, wasUp: false, status: { name: dep.name, critical: dep.critical, state: 'starting', since: new Date(), failures: 0 } };
    this.#entries.set(dep.name, entry);
    if (!this.#stopped) void this.#probe(entry);
  }

  /** Stops watching a dependency (a source deleted while running). */
  remove(name: string): void {
    const entry = this.#entries.get(name);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.#entries.delete(name);
  }

  stop(): void {
    this.#stopped = true;
    for (const entry of this.#entries.values()) clearTimeout(entry.timer);
  }

  #probe(entry: Entry): Promise<void> {
    // One probe at a time per dependency: a slow one is not stacked on.
    entry.running ??= this.#runProbe(entry).finally(() => {
      entry.running = undefined;
    });
    return entry.running;
  }

  async #runProbe(entry: Entry): Promise<void> {
    clearTimeout(entry.timer);
    const timeoutMs = this.#o.probeTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const detail = await Promise.race([
        entry.dep.probe(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      this.#record(entry, undefined, detail ?? undefined);
    } catch (err) {
      this.#record(entry, err instanceof Error ? err.message : String(err));
    } finally {
      clearTimeout(timer);
    }
    // Stopped, or this dependency was removed while its probe ran: no next probe.
    if (this.#stopped || this.#entries.get(entry.dep.name) !== entry) return;
    entry.timer = setTimeout(() => void this.#probe(entry), this.#nextDelay(entry.status.failures));
    entry.timer.unref();
  }

  #nextDelay(failures: number): number {
    if (failures === 0) return this.#o.intervalMs;
    const base = Math.min(this.#o.retryMaxMs, this.#o.retryBaseMs * 2 ** (failures - 1));
    return Math.round(base * (0.8 + 0.4 * Math.random()));
  }

  #record(entry: Entry, failure: string | undefined, detail?: string): void {
    const { status, dep } = entry;
    const now = new Date();
    status.lastChecked = now;
    const log = this.#o.logger;
    if (failure === undefined) {
      const was = status.state;
      const downFor = now.getTime() - status.since.getTime();
      status.failures = 0;
      delete status.reason;
      if (detail !== undefined) status.detail = detail;
      else delete status.detail;
      if (was === 'up') return;
      status.state = 'up';
      status.since = now;
      if (entry.wasUp)
        log.info({ event: 'dependency_up', dependency: dep.name, down_ms: downFor }, `${dep.name} is back after ${(downFor / 1000).toFixed(1)} s`);
      else if (was === 'down')
        log.info(
          { event: 'dependency_up', dependency: dep.name, waited_ms: now.getTime() - this.#startedAt },
          `${dep.name} is up (waited ${((now.getTime() - this.#startedAt) / 1000).toFixed(1)} s)`,
        );
      entry.wasUp = true;
      this.emit('change', { ...status });
      return;
    }
    status.failures += 1;
    status.reason = failure;
    delete status.detail;
    const retryMs = this.#nextDelay(status.failures);
    if (!entry.wasUp) {
      // Start-up: say what we wait for on every try, so an operator reading the log sees why the server is not ready.
      log[dep.critical ? 'warn' : 'info'](
        { event: 'dependency_waiting', dependency: dep.name, attempt: status.failures, retry_in_ms: retryMs, reason: failure, critical: dep.critical },
        `waiting for ${dep.name} (try ${status.failures}, next in ${(retryMs / 1000).toFixed(1)} s): ${failure}`,
      );
    } else if (status.state === 'up') {
      log.warn({ event: 'dependency_down', dependency: dep.name, reason: failure, critical: dep.critical }, `${dep.name} is down: ${failure}`);
    }
    if (status.state === 'down') return;
    status.state = 'down';
    status.since = now;
    this.emit('change', { ...status });
  }
}
