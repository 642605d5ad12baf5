import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Buckets from 0.5 ms to 10 s: fine at the low end where decode and
 * post-processing live, wide enough for CPU inference of large models.
 */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Sightline's Prometheus metrics, one registry per server instance (names from DESIGN.md). */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'sightline_requests_total',
      help: 'HTTP requests answered, by route, production line and status code.',
      labelNames: ['route', 'line', 'status'] as const,
      registers,
    }),
    requestDuration: new Histogram({
      name: 'sightline_request_duration_seconds',
      help: 'HTTP request durations (arrival to last byte), by route; WebSocket sessions are not requests and are left out.',
      labelNames: ['route'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    stageDuration: new Histogram({
      name: 'sightline_stage_duration_seconds',
      help: 'Time per pipeline stage (queue, decode, preprocess, infer, postprocess).',
      labelNames: ['model', 'stage'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    detections: new Counter({
      name: 'sightline_detections_total',
      help: 'Detections returned, by line and label.',
      labelNames: ['line', 'label'] as const,
      registers,
    }),
    verdicts: new Counter({
      name: 'sightline_verdicts_total',
      help: 'Inspection verdicts, by line and verdict.',
      labelNames: ['line', 'verdict'] as const,
      registers,
    }),
    batchSize: new Histogram({
      name: 'sightline_batch_size',
      help: 'Requests per inference batch.',
      labelNames: ['model'] as const,
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers,
    }),
    queueDepth: new Gauge({
      name: 'sightline_queue_depth',
      help: 'Requests admitted and not yet running (queued or decoding), per queue.',
      labelNames: ['queue'] as const,
      registers,
    }),
    rejected: new Counter({
      name: 'sightline_rejected_total',
      help: 'Requests refused or dropped by admission control, by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
    jobs: new Counter({
      name: 'sightline_jobs_total',
      help: 'Async jobs by state change (enqueued, done, retrying, dead).',
      labelNames: ['state'] as const,
      registers,
    }),
    modelReady: new Gauge({
      name: 'sightline_model_ready',
      help: '1 when the model version is READY, else 0.',
      labelNames: ['model', 'version'] as const,
      registers,
    }),
    connections: new Gauge({
      name: 'sightline_connections',
      help: 'Open long-lived client connections, by transport (websocket) and client kind.',
      labelNames: ['transport', 'client_kind'] as const,
      registers,
    }),
    streamFrames: new Counter({
      name: 'sightline_stream_frames_total',
      help: 'WebSocket stream frames by outcome: received, then processed (result sent), failed (error sent), dropped (backpressure) or abandoned (waiting when the connection closed).',
      labelNames: ['outcome'] as const,
      registers,
    }),
    streamEvents: new Counter({
      name: 'sightline_stream_events_total',
      help: 'Subscribed events for WebSocket stream clients: sent, or skipped because the client was not reading (send buffer over its bound).',
      labelNames: ['outcome'] as const,
      registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
