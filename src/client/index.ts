/**
 * The Sightline TypeScript client SDK (Node 20+): synchronous detection, async jobs,
 * tus resumable uploads and the /v1/stream WebSocket with reconnect.
 *
 * @example
 * ```ts
 * import { SightlineClient, SightlineError } from 'sightline/client';
 * const client = new SightlineClient({ baseUrl: 'http://127.0.0.1:8080', apiKey: process.env.SIGHTLINE_API_KEY });
 * ```
 * @packageDocumentation
 */
export { SightlineClient, type SightlineClientOptions } from './client.js';
export { SightlineError, CLIENT_ERROR_CODES, CLIENT_RETRYABLE_CODES, parseRetryAfter, type ClientErrorCode, type SightlineErrorInit } from './errors.js';
export { RETRYABLE_CODES, type ErrorBody, type ErrorResponse } from '../protocol/errors.js';
export {
  StreamConnection,
  streamUrl,
  type StreamOptions,
  type StreamConnectionEvents,
  type FrameOptions,
  type FrameInfo,
  type CloseInfo,
  type ReconnectInfo,
  type HelloMessage,
  type ResultMessage,
  type DroppedMessage,
  type ServerErrorMessage,
  type PongMessage,
} from './stream.js';
export { backoffDelay, backoffCap, reconnectOptions, DEFAULT_RECONNECT, type ReconnectOptions } from './backoff.js';
export { edgeResize, type EdgeResize, type EdgeResized } from './edge-resize.js';
export { sniffImageType, uploadMetadata, type UploadInput, type UploadOptions, type UploadResult } from './upload.js';
export type {
  Box,
  CallOptions,
  DeadReason,
  Detection,
  DetectionResult,
  DetectOptions,
  InferenceOptions,
  JobState,
  JobStatus,
  Priority,
  ResultSource,
  StageTimings,
  SubmitJobOptions,
  SubmittedJob,
  Verdict,
  WaitForJobOptions,
  SightlineEvent,
  ResultEvent,
  JobStatusEvent,
  CameraStateEvent,
  Review,
  ReviewBox,
  ReviewInput,
  ReviewStatus,
  CameraState,
  CameraStatus,
  LineList,
  LineStatus,
} from './types.js';
export { ALL_LINES } from '../protocol/events.js';
export {
  encodeFrame,
  PROTOCOL_VERSION,
  MAX_HEADER_BYTES,
  FRAME_ID_PATTERN,
  type FrameHeader,
  type ClientMessage,
  type ServerMessage,
  type StreamLimits,
  type StreamStatus,
} from '../protocol/stream.js';
