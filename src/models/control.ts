import type { Logger } from 'pino';
import { Errors } from '../errors.js';
import { formatVersionPolicy } from '../config/version-policy.js';
import type { ModelEntry, ModelRepository, VersionOverrides } from '../inference/repository.js';
import { splitProblems, type TrafficSplit } from '../inference/traffic.js';
import type { ModelControlState, ModelControlStore } from './control-store.js';

export type ModelControlMode = 'poll' | 'explicit' | 'none';

export interface ModelControlOptions {
  mode: ModelControlMode;
  pollIntervalMs: number;
  syncIntervalMs: number;
  repository: ModelRepository;
  /** Absent when mode is none. */
  store?: ModelControlStore;
  logger: Logger;
}

/** A change to a traffic split: a key given replaces, null clears, absent keeps. */
export interface TrafficPatch {
  primary?: string | null;
  canary?: { version: string; percent: number; by?: 'request' | 'line' } | null;
  shadow?: { version: string; percent: number } | null;
  pins?: Record<string, string> | null;
}

/** How long the first read of the control table may hold up loading at start; then the policy alone decides, and the next sync applies the rest. */
const FIRST_SYNC_LIMIT_MS = 3000;

const compareVersions = (a: string, b: string) => {
  const na = Number(a);
  const nb = Number(b);
  return Number.isFinite(na) && Number.isFinite(nb) ? na - nb : a.localeCompare(b);
};

/**
 * Model control: which versions are loaded and who gets traffic, changed while
 * serving. `poll` rescans models_dir every pollIntervalMs (a new version loads once
 * its files hold still, in the background, and takes traffic only when warm);
 * every mode but `none` applies the control table (loads, unloads, traffic splits
 * made through the API of any process), read every syncIntervalMs. A call to the
 * API writes the table, applies it here at once and answers when it is done here;
 * other processes follow within one sync interval.
 */
export class ModelControl {
  private readonly applied = new Map<string, number>();
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private syncFailing = false;

  constructor(private readonly options: ModelControlOptions) {}

  get mode(): ModelControlMode {
    return this.options.mode;
  }

  /** Reads the control table once (bounded), so that the first load already follows it; then starts the timers. */
  async start(): Promise<void> {
    const { mode, store } = this.options;
    if (mode === 'none' || !store) return;
    await Promise.race([this.sync(false), new Promise((r) => setTimeout(r, FIRST_SYNC_LIMIT_MS).unref())]);
    this.loop(() => this.sync(true), this.options.syncIntervalMs);
    if (mode === 'poll') this.loop(() => this.options.repository.refresh(), this.options.pollIntervalMs);
  }

  /** Runs `tick` every `ms` after the previous run ended: a slow scan or load never overlaps the next. */
  private loop(tick: () => Promise<void>, ms: number): void {
    const schedule = () => {
      if (this.stopped) return;
      const timer = setTimeout(() => {
        tick()
          .catch((err: Error) => this.options.logger.warn({ event: 'model_control_error', err }, `model control: ${err.message}`))
          .finally(schedule);
      }, ms);
      timer.unref();
      this.timers.push(timer);
      if (this.timers.length > 4) this.timers = this.timers.slice(-2);
    };
    schedule();
  }

  /** Applies every row whose revision this process has not applied yet. */
  private async sync(reconcile: boolean): Promise<void> {
    let rows;
    try {
      rows = await this.options.store!.all();
    } catch (err) {
      // The last applied state keeps serving; said once per outage, not every second.
      if (!this.syncFailing) this.options.logger.warn({ event: 'model_control_sync_failed', err }, `model control table unreadable: ${(err as Error).message}`);
      this.syncFailing = true;
      return;
    }
    this.syncFailing = false;
    for (const row of rows) {
      if (this.applied.get(row.model) === row.revision) continue;
      this.applyState(row.model, row.state, row.revision);
      if (reconcile) void this.options.repository.reconcile(row.model);
    }
  }

  private applyState(name: string, state: ModelControlState, revision: number): void {
    this.applied.set(name, revision);
    this.options.repository.setControl(name, state.versions, state.traffic);
    this.options.logger.info(
      { event: 'model_control_applied', model: name, revision, versions: state.versions, traffic: state.traffic },
      `model control: ${name} at revision ${revision}`,
    );
  }

  private enabled(what: string): ModelControlStore {
    if (this.options.mode === 'none' || !this.options.store) throw new Errors.MODEL_CONTROL_DISABLED(`${what} needs model_control poll or explicit`);
    return this.options.store;
  }

  private async change(name: string, fn: (s: ModelControlState) => ModelControlState): Promise<void> {
    const row = await this.enabled('changing models').update(name, fn);
    this.applyState(name, row.state, row.revision);
    await this.options.repository.reconcile(name);
  }

  private versionsOnDisk(name: string): string[] {
    return this.options.repository
      .list()
      .filter((e) => e.name === name)
      .map((e) => e.version);
  }

  private knownModel(name: string, version?: string): void {
    const versions = this.versionsOnDisk(name);
    if (versions.length === 0) throw new Errors.MODEL_NOT_FOUND(JSON.stringify(name));
    if (version !== undefined && !versions.includes(version)) throw new Errors.MODEL_NOT_FOUND(JSON.stringify(`${name}:${version}`));
  }

  /**
   * Loads a model (its policy's versions) or one version besides them. The
   * directory is read again first, and the files are taken as they are (the
   * caller says they are complete); a version that failed before is tried again.
   * Answers when loaded; a failure leaves what served before in place.
   */
  async load(name: string, version?: string): Promise<ModelEntry[]> {
    this.enabled('POST /v1/models/:name/load');
    await this.options.repository.refresh(name, { trustFiles: true, retry: version ?? true });
    this.knownModel(name, version);
    await this.change(name, (s) => ({
      ...s,
      versions: {
        ...s.versions,
        unloaded: false,
        extra: version !== undefined ? [...new Set([...(s.versions.extra ?? []), version])] : s.versions.extra,
        excluded: version !== undefined ? (s.versions.excluded ?? []).filter((v) => v !== version) : [],
      },
    }));
    const entries = this.entriesOf(name);
    const failed =
      version !== undefined
        ? entries.filter((e) => e.version === version && e.state === 'FAILED')
        : entries.every((e) => e.state !== 'READY')
          ? entries.filter((e) => e.state === 'FAILED')
          : [];
    if (failed.length > 0) {
      const f = failed.at(-1)!;
      throw new Errors.MODEL_LOAD_FAILED(`${f.name}:${f.version}`, f.reason ?? 'unknown reason');
    }
    return entries;
  }

  /** Unloads a model (every version) or one version: taken out of traffic, drained, released. */
  async unload(name: string, version?: string): Promise<ModelEntry[]> {
    this.enabled('POST /v1/models/:name/unload');
    this.knownModel(name, version);
    await this.change(name, (s) => {
      const versions: VersionOverrides =
        version === undefined
          ? { unloaded: true }
          : { ...s.versions, extra: (s.versions.extra ?? []).filter((v) => v !== version), excluded: [...new Set([...(s.versions.excluded ?? []), version])] };
      // A split that names an unloaded version would load it again.
      const traffic = version === undefined ? s.traffic : withoutVersion(s.traffic, version);
      return { ...s, versions, ...(traffic ? { traffic } : { traffic: undefined }) };
    });
    return this.entriesOf(name);
  }

  /** Changes the traffic split; versions it names are loaded (and warmed up) before it answers. */
  async setTraffic(name: string, patch: TrafficPatch): Promise<TrafficSplit> {
    this.enabled('POST /v1/models/:name/traffic');
    this.knownModel(name);
    const current = this.options.repository.trafficOf(name) ?? {};
    const next = applyPatch(current, patch);
    if (next.primary === undefined && (next.canary || next.shadow || next.pins)) {
      // A canary or shadow takes a share from what serves now: that version stays the primary, however new the canary is.
      const serving = this.options.repository.find(name);
      if (serving.state === 'READY') next.primary = serving.version;
    }
    const problems = splitProblems(next, this.versionsOnDisk(name));
    if (problems.length > 0) throw new Errors.INVALID_TRAFFIC_SPLIT(problems.join('; '));
    await this.change(name, (s) => ({ ...s, traffic: next, previous: s.traffic ?? {} }));
    return next;
  }

  /**
   * Returns all traffic to the previous version in one call: a canary (and pinned
   * lines) is dropped, so the primary answers everything; without one, the
   * version that served before the current one becomes the primary (loaded and
   * warmed up first if it was released).
   */
  async rollback(name: string): Promise<{ serving: string; traffic: TrafficSplit }> {
    this.enabled('POST /v1/models/:name/rollback');
    this.knownModel(name);
    const current = this.options.repository.trafficOf(name) ?? {};
    let next: TrafficSplit;
    if (current.canary || Object.keys(current.pins ?? {}).length > 0) {
      next = applyPatch(current, { canary: null, pins: null });
    } else {
      const serving = this.options.repository.find(name).version;
      const earlier = this.entriesOf(name)
        .filter((e) => compareVersions(e.version, serving) < 0 && e.state !== 'FAILED')
        .at(-1);
      if (!earlier) throw new Errors.INVALID_TRAFFIC_SPLIT(`no version of ${name} older than ${serving} to roll back to`);
      next = applyPatch(current, { primary: earlier.version });
    }
    await this.change(name, (s) => ({ ...s, traffic: next, previous: s.traffic ?? {}, versions: { ...s.versions, unloaded: false } }));
    const serving = this.options.repository.find(name);
    if (serving.state !== 'READY') throw new Errors.MODEL_LOAD_FAILED(`${serving.name}:${serving.version}`, serving.reason ?? serving.state);
    return { serving: serving.version, traffic: next };
  }

  private entriesOf(name: string): ModelEntry[] {
    return this.options.repository.list().filter((e) => e.name === name);
  }

  /** Per model: policy, overrides and split, as GET /v1/models shows them. */
  describe(): { mode: ModelControlMode; models: Record<string, { policy: string; serving?: string } & VersionOverrides & { traffic?: TrafficSplit }> } {
    const repo = this.options.repository;
    const models: ReturnType<ModelControl['describe']>['models'] = {};
    for (const name of repo.names()) {
      let serving: string | undefined;
      try {
        const e = repo.find(name);
        serving = e.state === 'READY' ? e.version : undefined;
      } catch {
        serving = undefined;
      }
      const traffic = repo.trafficOf(name);
      models[name] = {
        policy: formatVersionPolicy(repo.policyOf(name)),
        ...(serving !== undefined ? { serving } : {}),
        ...repo.overridesOf(name),
        ...(traffic ? { traffic } : {}),
      };
    }
    return { mode: this.options.mode, models };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    await this.options.store?.close();
  }
}

function applyPatch(current: TrafficSplit, patch: TrafficPatch): TrafficSplit {
  const next: TrafficSplit = { ...current };
  if (patch.primary === null) delete next.primary;
  else if (patch.primary !== undefined) next.primary = patch.primary;
  if (patch.canary === null) delete next.canary;
  else if (patch.canary !== undefined) next.canary = { version: patch.canary.version, percent: patch.canary.percent, by: patch.canary.by ?? 'request' };
  if (patch.shadow === null) delete next.shadow;
  else if (patch.shadow !== undefined) next.shadow = { ...patch.shadow };
  if (patch.pins === null) delete next.pins;
  else if (patch.pins !== undefined) next.pins = { ...patch.pins };
  return next;
}

function withoutVersion(split: TrafficSplit | undefined, version: string): TrafficSplit | undefined {
  if (!split) return undefined;
  const next: TrafficSplit = { ...split };
  if (next.primary === version) delete next.primary;
  if (next.canary?.version === version) delete next.canary;
  if (next.shadow?.version === version) delete next.shadow;
  if (next.pins) next.pins = Object.fromEntries(Object.entries(next.pins).filter(([, v]) => v !== version));
  return next;
}
