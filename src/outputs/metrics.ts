import { Counter, Gauge, type Registry } from 'prom-client';

/** Why a message was given up: outbox full (oldest dropped), the outbox database refused it, attempts used up (a dead letter), a PLC handshake buffer overflowed. */
export const DROP_REASONS = ['outbox_full', 'outbox_unavailable', 'dead_letter', 'buffer_full'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface OutputMetrics {
  sent: Counter<'output'>;
  failed: Counter<'output'>;
  dropped: Counter<'output' | 'reason'>;
  outboxDepth: Gauge<'output'>;
  connected: Gauge<'output'>;
}

const NAMES = {
  sent: 'sightline_output_sent_total',
  failed: 'sightline_output_failed_total',
  dropped: 'sightline_output_dropped_total',
  outboxDepth: 'sightline_output_outbox_depth',
  connected: 'sightline_output_connected',
} as const;

/**
 * The factory output metrics on a registry (docs/metrics.md), idempotent like
 * snapshotMetrics: tests build several runtimes on one registry.
 */
export function outputMetrics(registry: Registry): OutputMetrics {
  const existing = registry.getSingleMetric(NAMES.sent);
  if (existing) {
    return {
      sent: existing as Counter<'output'>,
      failed: registry.getSingleMetric(NAMES.failed) as Counter<'output'>,
      dropped: registry.getSingleMetric(NAMES.dropped) as Counter<'output' | 'reason'>,
      outboxDepth: registry.getSingleMetric(NAMES.outboxDepth) as Gauge<'output'>,
      connected: registry.getSingleMetric(NAMES.connected) as Gauge<'output'>,
    };
  }
  const registers = [registry];
  return {
    sent: new Counter({
      name: NAMES.sent,
      help: 'Messages an output delivered (acknowledged by the peer where it acknowledges).',
      labelNames: ['output'] as const,
      registers,
    }),
    failed: new Counter({
      name: NAMES.failed,
      help: 'Delivery attempts that failed (the message stays in the outbox and is tried again).',
      labelNames: ['output'] as const,
      registers,
    }),
    dropped: new Counter({
      name: NAMES.dropped,
      help: 'Messages an output gave up, by reason: outbox_full (oldest dropped), outbox_unavailable (the database refused the write), dead_letter (attempts used up), buffer_full (a PLC handshake buffer overflowed).',
      labelNames: ['output', 'reason'] as const,
      registers,
    }),
    outboxDepth: new Gauge({ name: NAMES.outboxDepth, help: "Messages waiting in an output's outbox.", labelNames: ['output'] as const, registers }),
    connected: new Gauge({
      name: NAMES.connected,
      help: '1 while an output is connected to its peer (or listening, for a server), else 0.',
      labelNames: ['output'] as const,
      registers,
    }),
  };
}

/** Exports an output's series as 0 from its start, so rate() and alerts work from the first message. */
export function zeroOutputSeries(metrics: OutputMetrics, output: string): void {
  metrics.sent.inc({ output }, 0);
  metrics.failed.inc({ output }, 0);
  for (const reason of DROP_REASONS) metrics.dropped.inc({ output, reason }, 0);
  metrics.outboxDepth.set({ output }, 0);
  metrics.connected.set({ output }, 0);
}
