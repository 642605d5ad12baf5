/** Events of /v1/stream subscriptions (and of the event bus between replicas). */
import type { CameraState } from './lines.js';
import type { DetectionResult, ResultSource } from './results.js';

/** A detection result, as /v1/detect returns it, published for subscribers of its line. */
export interface ResultEvent {
  type: 'result';
  line: string;
  source: ResultSource;
  /** ISO time the result was produced. */
  at: string;
  result: DetectionResult;
}

/** A job changed state (done results also arrive as ResultEvents with source "job"). */
export interface JobStatusEvent {
  type: 'job';
  line: string;
  at: string;
  job_id: string;
  state: 'retrying' | 'dead';
  error?: string;
}

/**
 * A camera of a line changed state (or appeared: `previous` null). Published once
 * per change by whichever process saw it first, whatever the number of replicas.
 */
export interface CameraStateEvent {
  type: 'camera';
  line: string;
  camera: string;
  state: CameraState;
  previous: CameraState | null;
  at: string;
  /** ISO time of the camera's last frame. */
  last_frame_at: string | null;
}

export type SightlineEvent = ResultEvent | JobStatusEvent | CameraStateEvent;

/** Subscribe to one line, or to every line with ALL_LINES. */
export const ALL_LINES = '*';
