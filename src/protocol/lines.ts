/** Lines and cameras as GET /v1/lines answers them and as camera events carry them. */

/**
 * `online`: a frame arrived within camera_stale_after_ms; `stale`: none for that
 * long; `offline`: none for camera_offline_after_ms.
 */
export const CAMERA_STATES = ['online', 'stale', 'offline'] as const;
export type CameraState = (typeof CAMERA_STATES)[number];

/** Per-second rates over the recent window (`window_s`), from every process that handles the camera. */
export interface FrameRates {
  /** Frames (requests, jobs, stream frames) that arrived. */
  received: number;
  /** Frames inspected (a result was produced). */
  processed: number;
  /** Frames refused, dropped or failed. */
  dropped: number;
}

/** OK/NG verdicts over the last hour. */
export interface VerdictCounts {
  ok: number;
  ng: number;
  /** ng / (ok + ng); null without results. */
  ng_rate: number | null;
}

export interface CameraStatus {
  line: string;
  camera: string;
  state: CameraState;
  /** ISO time the state was entered. */
  since: string;
  /** ISO time of the last frame that arrived; null when none did. */
  last_frame_at: string | null;
  first_seen_at: string;
  /** Rates over the last `window_s` seconds. */
  fps: FrameRates;
  /** p95 of the server time of its results over the last `window_s` seconds; null without results. */
  latency_p95_ms: number | null;
  last_hour: VerdictCounts;
}

/** Review counts of a line's results (issue 14's review); `unreviewed` counts results without a review. */
export interface ReviewCounts {
  confirmed: number;
  false_call: number;
  missed: number;
  unreviewed: number;
}

export interface LineStatus {
  line: string;
  /** The best state of its cameras: a line is online while any of its cameras is. */
  state: CameraState;
  last_frame_at: string | null;
  fps: FrameRates;
  latency_p95_ms: number | null;
  last_hour: VerdictCounts;
  /** Review counts of the line's results over the last hour; null when the store cannot say. */
  reviews: ReviewCounts | null;
  cameras: CameraStatus[];
}

/** GET /v1/lines. */
export interface LineList {
  at: string;
  /** The recent window of `fps` and `latency_p95_ms`, in seconds. */
  window_s: number;
  lines: LineStatus[];
}
