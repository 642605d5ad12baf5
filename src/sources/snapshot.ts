import { PulledSource, type SourceContext } from './source.js';
import type { SourceSpec } from './spec.js';

/**
 * An HTTP snapshot URL (most IP cameras have one: `/snapshot.jpg`, `/cgi-bin/snapshot.cgi`)
 * fetched every interval. Fetching and inspecting are decoupled: while a frame is
 * being inspected the newest fetched one waits and any older waiting frame is
 * dropped and counted, so a slow model never makes the source fall behind.
 */
export class SnapshotSource extends PulledSource {
  protected override readonly fixedRate = true;

  constructor(spec: SourceSpec, ctx: SourceContext) {
    super(spec, ctx);
  }

  protected get intervalMs(): number {
    return this.spec.interval_ms || this.ctx.settings.snapshotIntervalMs;
  }

  protected async step(signal: AbortSignal): Promise<void> {
    const { timeoutMs, maxBytes } = this.ctx.settings;
    const response = await fetch(this.spec.target, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      headers: { accept: 'image/jpeg, image/png, image/webp, */*;q=0.5' },
    }).catch((err: Error) => {
      throw new Error(`GET ${this.spec.target}: ${err.cause instanceof Error ? err.cause.message : err.message}`);
    });
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      throw new Error(`GET ${this.spec.target}: HTTP ${response.status}`);
    }
    const length = Number(response.headers.get('content-length') ?? 0);
    if (length > maxBytes) {
      await response.body?.cancel().catch(() => undefined);
      throw new Error(`GET ${this.spec.target}: ${length} bytes, more than body_limit_bytes`);
    }
    const image = Buffer.from(await response.arrayBuffer());
    if (image.length === 0) throw new Error(`GET ${this.spec.target}: empty body`);
    if (image.length > maxBytes) throw new Error(`GET ${this.spec.target}: ${image.length} bytes, more than body_limit_bytes`);
    this.offer(image);
  }
}
