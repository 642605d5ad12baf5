import { readFileSync } from 'node:fs';
import type { LineList } from '../../protocol/lines.js';
import type { OutputFigures } from './mode.js';

let cachedVersion: string | undefined;

/** Sightline's version from package.json (src/outputs/mqtt/ and dist/outputs/mqtt/ are both three levels down). */
export function packageVersion(): string {
  if (cachedVersion === undefined) {
    try {
      const text = readFileSync(new URL('../../../package.json', import.meta.url), 'utf8');
      cachedVersion = (JSON.parse(text) as { version?: string }).version ?? 'unknown';
    } catch {
      cachedVersion = 'unknown';
    }
  }
  return cachedVersion;
}

/** The retained `<prefix>/status` summary. */
export interface StatusMessage {
  instance: string;
  version: string;
  started_at: string;
  at: string;
  uptime_s: number;
  lines: { line: string; state: string; cameras: Record<string, string> }[];
  outbox: { depth: number; max: number };
  sent: number;
  failed: number;
  dropped: number;
}

export function statusMessage(
  info: { instance: string; version: string; startedAt: Date },
  lines: LineList['lines'],
  figures: OutputFigures,
  now = new Date(),
): StatusMessage {
  return {
    instance: info.instance,
    version: info.version,
    started_at: info.startedAt.toISOString(),
    at: now.toISOString(),
    uptime_s: Math.round((now.getTime() - info.startedAt.getTime()) / 1000),
    lines: lines.map((l) => ({ line: l.line, state: l.state, cameras: Object.fromEntries(l.cameras.map((c) => [c.camera, c.state])) })),
    outbox: { depth: figures.outboxDepth, max: figures.outboxMax },
    sent: figures.sent,
    failed: figures.failed,
    dropped: figures.dropped,
  };
}
