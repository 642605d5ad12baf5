import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Buckets from 0.5 ms to 10 s: fine at the low end where decode and
 * post-processing live, wide enough for CPU inference of large models.
 */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** prom-client default metrics left out of /metrics (see createMetrics). */
export const REDUNDANT_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Process-wide figures that live outside the registry and are read when /metrics is scraped. */
export interface MetricSources {
  /** Images decoded for model input so far, by decoder (libjpeg-turbo, sharp). */
  imageDecodes?: () => Readonly<Record<string, number>>;
}

/** Sightline's Prometheus metrics, one registry per server instance (names in docs/metrics.md). */
export function createMetrics(sources: MetricSources = {}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client's *_total gauges break Prometheus naming (promtool check metrics: a
  // non-counter must not end in _total). The per-type gauges without the suffix
  // (nodejs_active_handles{type} …) stay; their sum is the same total.
  for (const name of REDUNDANT_DEFAULT_METRICS) registry.removeSingleMetric(name);
  const registers = [registry];
  const metrics = {
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
      help: 'Inspection verdicts (ok, ng, check), by line and verdict.',
      labelNames: ['line', 'verdict'] as const,
      registers,
    }),
    qualityOutside: new Counter({
      name: 'sightline_image_quality_outside_total',
      help: "Images outside their model's image-quality envelope, by line and reason (blurred, noisy, underexposed, overexposed, low contrast, high contrast, clipped dark, clipped bright).",
      labelNames: ['line', 'reason'] as const,
      registers,
    }),
    imageDecodes: new Counter({
      name: 'sightline_image_decodes_total',
      help: 'Images decoded for model input, by decoder: libjpeg-turbo (the native path for plain JPEGs at an exact scale) or sharp (everything else).',
      labelNames: ['decoder'] as const,
      registers,
      // The decoders count process-wide (src/inference/preprocess.ts); the counter shows
      // those totals at each scrape rather than being incremented per request.
      collect() {
        const counts = sources.imageDecodes?.();
        if (!counts) return;
        this.reset();
        for (const [decoder, n] of Object.entries(counts)) this.inc({ decoder }, n);
      },
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
    instanceRestarts: new Counter({
      name: 'sightline_model_instance_restarts_total',
      help: 'Model instances replaced by the inference watchdog, by reason (stalled: an inference ran past inference_stall_ms).',
      labelNames: ['model', 'version', 'reason'] as const,
      registers,
    }),
    versionRequests: new Counter({
      name: 'sightline_model_version_requests_total',
      help: 'Inspections answered per model version, by how the version was chosen (requested, primary, canary, pinned).',
      labelNames: ['model', 'version', 'route'] as const,
      registers,
    }),
    shadowComparisons: new Counter({
      name: 'sightline_shadow_comparisons_total',
      help: 'Shadow runs compared with the answer, by whether the verdicts agreed (agree, disagree) or the shadow run failed (failed).',
      labelNames: ['model', 'version', 'outcome'] as const,
      registers,
    }),
    shadowAgreement: new Gauge({
      name: 'sightline_shadow_agreement_ratio',
      help: "Share of shadow runs whose verdict equals the answer's, since this process started shadowing the version.",
      labelNames: ['model', 'version'] as const,
      registers,
    }),
    shadowBoxAgreement: new Gauge({
      name: 'sightline_shadow_box_agreement_ratio',
      help: 'Mean box-level agreement of shadow runs with the answer: matched boxes (same label, IoU >= 0.5) x 2 / all boxes of both.',
      labelNames: ['model', 'version'] as const,
      registers,
    }),
    connections: new Gauge({
      name: 'sightline_connections',
      help: 'Open client connections (HTTP sockets and WebSocket sessions; refused ones left out), by transport (http, websocket) and client kind (camera, dashboard, api_script, system).',
      labelNames: ['transport', 'client_kind'] as const,
      registers,
    }),
    connectionsLimit: new Gauge({
      name: 'sightline_connections_limit',
      help: 'max_connections: open connections (sum of sightline_connections) beyond which new ones are refused.',
      registers,
    }),
    streamFrames: new Counter({
      name: 'sightline_stream_frames_total',
      help: 'WebSocket stream frames by outcome: received, then processed (result sent), failed (error sent), dropped (backpressure) or abandoned (waiting when the connection closed).',
      labelNames: ['outcome'] as const,
      registers,
    }),
    modelInfo: new Gauge({
      name: 'sightline_model_info',
      help: 'Always 1 for each READY model version; labels carry its output format, input size (WxH) and number of classes.',
      labelNames: ['model', 'version', 'format', 'input', 'classes'] as const,
      registers,
    }),
    // System gauges, set by the system sampler (src/metrics/system-sampler.ts) every system_sample_interval_ms.
    cpuUtilization: new Gauge({
      name: 'sightline_cpu_utilization_ratio',
      help: 'CPU time of this process over the last sampling interval, divided by wall time and by the CPUs available to it (0..1).',
      registers,
    }),
    systemCpuUtilization: new Gauge({
      name: 'sightline_system_cpu_utilization_ratio',
      help: "Busy share of the machine's CPUs, or of the container's CPU quota where it has one, over the last sampling interval (0..1).",
      registers,
    }),
    memoryRss: new Gauge({
      name: 'sightline_memory_rss_bytes',
      help: 'Resident set size of this process.',
      registers,
    }),
    systemMemoryUsed: new Gauge({
      name: 'sightline_system_memory_used_bytes',
      help: "Memory in use on the machine (total minus available), or the container's working set where it has a memory limit.",
      registers,
    }),
    systemMemoryTotal: new Gauge({
      name: 'sightline_system_memory_total_bytes',
      help: "Total memory of the machine, or the container's memory limit where lower.",
      registers,
    }),
    eventLoopLag: new Gauge({
      name: 'sightline_event_loop_lag_seconds',
      help: 'p99 event-loop lag over the last sampling interval (timer delay beyond its resolution).',
      registers,
    }),
    // GPU gauges, from nvidia-smi (src/metrics/gpu-sampler.ts); absent without a GPU.
    gpuInfo: new Gauge({
      name: 'sightline_gpu_info',
      help: 'Always 1 for each GPU nvidia-smi reports; labels carry its index, name and UUID.',
      labelNames: ['gpu', 'name', 'uuid'] as const,
      registers,
    }),
    gpuUtilization: new Gauge({
      name: 'sightline_gpu_utilization_ratio',
      help: 'GPU utilization (share of the last sample period a kernel ran), 0..1, by GPU index.',
      labelNames: ['gpu'] as const,
      registers,
    }),
    gpuMemoryUsed: new Gauge({
      name: 'sightline_gpu_memory_used_bytes',
      help: 'GPU memory in use, by GPU index.',
      labelNames: ['gpu'] as const,
      registers,
    }),
    gpuMemoryTotal: new Gauge({
      name: 'sightline_gpu_memory_total_bytes',
      help: 'Total GPU memory, by GPU index.',
      labelNames: ['gpu'] as const,
      registers,
    }),
    gpuTemperature: new Gauge({
      name: 'sightline_gpu_temperature_celsius',
      help: 'GPU core temperature, by GPU index.',
      labelNames: ['gpu'] as const,
      registers,
    }),
    gpuPower: new Gauge({
      name: 'sightline_gpu_power_watts',
      help: 'GPU power draw, by GPU index.',
      labelNames: ['gpu'] as const,
      registers,
    }),
    // Lines and cameras (src/lines): what arrives, is inspected and is lost, per camera.
    framesReceived: new Counter({
      name: 'sightline_frames_received_total',
      help: 'Frames that arrived (requests to /v1/detect, jobs, uploads, stream frames), by line and camera.',
      labelNames: ['line', 'camera'] as const,
      registers,
    }),
    framesProcessed: new Counter({
      name: 'sightline_frames_processed_total',
      help: 'Frames inspected (a result was produced), by line and camera.',
      labelNames: ['line', 'camera'] as const,
      registers,
    }),
    framesDropped: new Counter({
      name: 'sightline_frames_dropped_total',
      help: 'Frames refused, dropped or failed, by line, camera and reason (queue_full, stream_dropped, or an error code in lower case).',
      labelNames: ['line', 'camera', 'reason'] as const,
      registers,
    }),
    cameraLastFrame: new Gauge({
      name: 'sightline_camera_last_frame_timestamp_seconds',
      help: 'Unix time of the last frame of a line and camera (from the shared store: the same on every replica).',
      labelNames: ['line', 'camera'] as const,
      registers,
    }),
    cameraState: new Gauge({
      name: 'sightline_camera_state',
      help: '1 for the state a line and camera is in (online, stale, offline), 0 for the others.',
      labelNames: ['line', 'camera', 'state'] as const,
      registers,
    }),
    // Pulled sources (src/sources): what each hot folder or camera URL read, and whether it can be read.
    sourceFrames: new Counter({
      name: 'sightline_source_frames_total',
      help: 'Frames of a pulled source by outcome: processed (inspected), failed (refused: not an image, too large), dropped (queue full, superseded by a newer frame), error (the source could not be read).',
      labelNames: ['source', 'outcome'] as const,
      registers,
    }),
    sourceUp: new Gauge({
      name: 'sightline_source_up',
      help: '1 while a pulled source can be read, 0 while it is down (retried with backoff); no series while paused.',
      labelNames: ['source'] as const,
      registers,
    }),
    streamEvents: new Counter({
      name: 'sightline_stream_events_total',
      help: 'Subscribed events for WebSocket stream clients: sent, or skipped because the client was not reading (send buffer over its bound).',
      labelNames: ['outcome'] as const,
      registers,
    }),
  };
  // Series whose labels are known in advance start at 0, so that rate() and the
  // alert rules work from the first event instead of from the second.
  for (const reason of REJECTED_REASONS) metrics.rejected.inc({ reason }, 0);
  for (const state of JOB_STATE_CHANGES) metrics.jobs.inc({ state }, 0);
  for (const outcome of STREAM_FRAME_OUTCOMES) metrics.streamFrames.inc({ outcome }, 0);
  for (const outcome of STREAM_EVENT_OUTCOMES) metrics.streamEvents.inc({ outcome }, 0);
  return metrics;
}

/** Every `reason` of sightline_rejected_total. */
export const REJECTED_REASONS = [
  'queue_full',
  'displaced',
  'deadline_exceeded',
  'event_loop_delay',
  'memory',
  'stream_dropped',
  'connection_limit',
  'request_timeout',
  'headers_too_large',
  'rate_limited',
  'store_write_failed',
] as const;
export const JOB_STATE_CHANGES = ['enqueued', 'done', 'retrying', 'dead'] as const;
export const STREAM_FRAME_OUTCOMES = ['received', 'processed', 'failed', 'dropped', 'abandoned'] as const;
export const STREAM_EVENT_OUTCOMES = ['sent', 'skipped'] as const;

export type Metrics = ReturnType<typeof createMetrics>;

/** What sightline_model_info needs of a model version (a ModelEntry fits). */
export interface ModelInfoSource {
  name: string;
  version: string;
  state: string;
  format?: string;
  inputWidth?: number;
  inputHeight?: number;
  manifest?: { labels: readonly string[] };
}

type ModelInfoLabels = { model: string; version: string; format: string; input: string; classes: string };
/** The label set last written per model version, so that it can be removed again. */
const modelInfoSeries = new WeakMap<Metrics['modelInfo'], Map<string, ModelInfoLabels>>();

/**
 * Keeps sightline_model_info in step with a model version's state: one series
 * (value 1) while it is READY, none otherwise. Call it on every state change.
 */
export function recordModelInfo(metrics: Pick<Metrics, 'modelInfo'>, entry: ModelInfoSource): void {
  const gauge = metrics.modelInfo;
  let series = modelInfoSeries.get(gauge);
  if (!series) modelInfoSeries.set(gauge, (series = new Map()));
  const key = `${entry.name}\u0000${entry.version}`;
  const previous = series.get(key);
  if (previous) {
    gauge.remove(previous);
    series.delete(key);
  }
  if (entry.state !== 'READY') return;
  const labels: ModelInfoLabels = {
    model: entry.name,
    version: entry.version,
    format: entry.format ?? 'unknown',
    input: entry.inputWidth && entry.inputHeight ? `${entry.inputWidth}x${entry.inputHeight}` : 'unknown',
    classes: String(entry.manifest?.labels.length ?? 0),
  };
  gauge.set(labels, 1);
  series.set(key, labels);
}
