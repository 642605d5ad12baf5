import type { Dependency } from '../health/dependency-monitor.js';
import { Errors } from '../errors.js';
import { FolderSource } from './folder.js';
import { SnapshotSource } from './snapshot.js';
import { MjpegSource } from './mjpeg.js';
import { FfmpegSource } from './ffmpeg.js';
import type { PulledSource, SourceContext, SourceStatus } from './source.js';
import { sourceSpec, type SourceInput, type SourceSpec } from './spec.js';

/** Where /readyz checks come and go as sources are added and deleted (the dependency monitor). */
export interface SourceChecks {
  add(dependency: Dependency): void;
  remove(name: string): void;
}

function create(spec: SourceSpec, ctx: SourceContext): PulledSource {
  switch (spec.kind) {
    case 'folder':
      return new FolderSource(spec, ctx);
    case 'snapshot':
      return new SnapshotSource(spec, ctx);
    case 'mjpeg':
      return new MjpegSource(spec, ctx);
    case 'ffmpeg':
      return new FfmpegSource(spec, ctx, ctx.settings.ffmpegPath);
  }
}

/**
 * The pulled sources of a server process (docs/sources.md): the configured ones
 * from the start, others added, paused, resumed and deleted through
 * /v1/sources. Each runs its own loop; each is a non-critical /readyz check
 * `source:<name>` (a camera away never makes the server unready).
 */
export class SourceManager {
  readonly #ctx: SourceContext;
  readonly #sources = new Map<string, PulledSource>();
  #checks: SourceChecks | undefined;
  #closed = false;

  constructor(ctx: SourceContext, configured: readonly SourceSpec[] = []) {
    this.#ctx = ctx;
    for (const spec of configured) this.#sources.set(spec.name, create(spec, ctx));
  }

  /** The /readyz checks of the configured sources; later ones are added to `checks` as they come. */
  dependencies(): Dependency[] {
    return [...this.#sources.values()].map((s) => this.#check(s));
  }

  #check(source: PulledSource): Dependency {
    return {
      name: `source:${source.spec.name}`,
      critical: false,
      probe: async () => {
        const status = source.status();
        if (status.state === 'down') throw new Error(status.reason ?? 'down');
        if (status.state === 'paused') return 'paused';
        return `${status.kind} ${status.state}, last frame ${status.last_frame_at ?? 'none yet'}`;
      },
    };
  }

  /** Starts every source that is not paused; `checks` receives the /readyz checks of sources added later. */
  start(checks?: SourceChecks): void {
    this.#checks = checks;
    for (const source of this.#sources.values()) source.start();
  }

  list(): SourceStatus[] {
    return [...this.#sources.values()].map((s) => s.status()).sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): SourceStatus {
    return this.#find(name).status();
  }

  #find(name: string): PulledSource {
    const source = this.#sources.get(name);
    if (!source) throw new Errors.SOURCE_NOT_FOUND(JSON.stringify(name));
    return source;
  }

  add(input: SourceInput): SourceStatus {
    if (this.#closed) throw new Errors.SHUTTING_DOWN();
    const spec = sourceSpec(input);
    if (this.#sources.has(spec.name)) throw new Errors.SOURCE_EXISTS(JSON.stringify(spec.name));
    const source = create(spec, this.#ctx);
    this.#sources.set(spec.name, source);
    this.#checks?.add(this.#check(source));
    source.start();
    this.#ctx.logger.info({ event: 'source_added', source: spec.name, kind: spec.kind }, `source ${spec.name} added`);
    return source.status();
  }

  async pause(name: string): Promise<SourceStatus> {
    const source = this.#find(name);
    if (source.state !== 'paused') await source.pause();
    return source.status();
  }

  resume(name: string): SourceStatus {
    const source = this.#find(name);
    source.resume();
    return source.status();
  }

  async remove(name: string): Promise<void> {
    const source = this.#find(name);
    this.#sources.delete(name);
    await source.close();
    source.forget();
    this.#checks?.remove(`source:${name}`);
    this.#ctx.logger.info({ event: 'source_deleted', source: name }, `source ${name} deleted`);
  }

  /** Stops every source; frames in hand finish (their files are moved) first. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#sources.values()].map((s) => s.close()));
  }
}
