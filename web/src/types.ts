// The shapes of Sightline's answers the dashboard reads (docs/http-api.md, docs/lines.md, docs/stream.md).

export type CameraState = 'online' | 'stale' | 'offline';
/** `check`: the image is outside the model's image-quality envelope (docs/models.md#image-quality-gate). */
export type Verdict = 'ok' | 'ng' | 'check';
export interface ImageQuality {
  sharpness: number;
  brightness: number;
  contrast: number;
  dark_fraction: number;
  bright_fraction: number;
  reasons: string[];
}
export type ReviewStatus = 'confirmed' | 'false_call' | 'missed';

export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}
export interface Detection {
  label: string;
  class_id: number;
  score: number;
  box: Box;
}
export interface Review {
  status: ReviewStatus;
  note?: string | null;
  boxes?: { label: string; box: Box; class_id?: number }[] | null;
  reviewer: string;
  reviewed_at: string;
}
export interface DetectionResult {
  request_id: string;
  line: string;
  camera: string;
  model: { name: string; version: string };
  image: { width: number; height: number };
  detections: Detection[];
  verdict: Verdict;
  timings_ms: Record<string, number>;
  /** Live results only (the store does not keep it): measures and reasons of the quality gate. */
  quality?: ImageQuality;
  created_at?: string;
  source?: string;
  review?: Review | null;
  [k: string]: unknown;
}
export interface ResultsPage {
  results: DetectionResult[];
  next_cursor: string | null;
}

export interface Fps {
  received: number;
  processed: number;
  dropped: number;
}
export interface LastHour {
  ok: number;
  ng: number;
  ng_rate: number | null;
}
export interface CameraInfo {
  line: string;
  camera: string;
  state: CameraState;
  since: string;
  last_frame_at: string | null;
  first_seen_at: string;
  fps: Fps;
  latency_p95_ms: number | null;
  last_hour: LastHour;
}
export interface LineInfo {
  line: string;
  state: CameraState;
  last_frame_at: string | null;
  fps: Fps;
  latency_p95_ms: number | null;
  last_hour: LastHour;
  reviews?: { confirmed: number; false_call: number; missed: number; unreviewed: number };
  cameras: CameraInfo[];
}
export interface LinesAnswer {
  at: string;
  window_s: number;
  lines: LineInfo[];
}

export interface GaugeSeries {
  avg: (number | null)[];
  max: (number | null)[];
  sum: (number | null)[];
}
export interface HistoryAnswer {
  from: string;
  to: string;
  step_ms: number;
  resolution: string;
  resolution_ms: number;
  line: string | null;
  timestamps: number[];
  series: {
    processes: (number | null)[];
    results: (number | null)[];
    throughput: (number | null)[];
    latency_ms: Record<'p50' | 'p95' | 'p99' | 'avg' | 'max', (number | null)[]>;
    errors: (number | null)[];
    client_errors: (number | null)[];
    rejected: (number | null)[];
    queue_depth: { jobs: GaugeSeries; inference: GaugeSeries };
    cpu: GaugeSeries;
    rss_bytes: GaugeSeries;
    event_loop_lag_ms: GaugeSeries;
    gpu_utilization?: GaugeSeries;
    gpu_memory_bytes?: GaugeSeries;
    verdicts: Record<string, { ok: (number | null)[]; ng: (number | null)[]; check: (number | null)[] }>;
    [k: string]: unknown;
  };
}

// Live messages (docs/stream.md)
export interface ResultEvent {
  type: 'result';
  line: string;
  source: 'sync' | 'job' | 'stream';
  at: string;
  result: DetectionResult;
}
export interface JobEvent {
  type: 'job';
  line: string;
  at: string;
  job_id: string;
  state: string;
  error: unknown;
}
export interface CameraEvent {
  type: 'camera';
  line: string;
  camera: string;
  state: CameraState;
  previous: CameraState | null;
  at: string;
  last_frame_at: string | null;
}
export interface StatusMessage {
  type: 'status';
  at: string;
  connections: number;
  throughput_fps: number | null;
  latency_ms: { p50: number | null; p99: number | null } | null;
  queue_depth: number;
  connection: Record<string, number>;
}
