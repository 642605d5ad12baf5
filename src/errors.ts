import createError from '@fastify/error';

/**
 * Every error Sightline returns to a client, with its stable code and HTTP status.
 * Codes are part of the API: once published a code is never reused or renamed.
 * docs/errors.md lists them all (a test checks that it does).
 */
export const Errors = {
  // request input
  INVALID_REQUEST: createError('INVALID_REQUEST', 'Invalid request: %s', 400),
  EMPTY_BODY: createError('EMPTY_BODY', 'The request carries no image', 400),
  INVALID_IMAGE: createError('INVALID_IMAGE', 'The body is not a readable image: %s', 400),
  UNSUPPORTED_MEDIA_TYPE: createError(
    'UNSUPPORTED_MEDIA_TYPE',
    'Unsupported content type %s: send image/jpeg, image/png, image/webp or multipart/form-data with field "image"',
    415,
  ),
  BODY_TOO_LARGE: createError('BODY_TOO_LARGE', 'The request body exceeds the limit of %s bytes', 413),
  IMAGE_TOO_LARGE: createError('IMAGE_TOO_LARGE', 'The image has %s pixels, more than the limit of %s', 413),
  NOT_FOUND: createError('NOT_FOUND', 'No route %s', 404),
  // models
  MODEL_NOT_FOUND: createError('MODEL_NOT_FOUND', 'No model %s in the repository', 404),
  MODEL_NOT_READY: createError('MODEL_NOT_READY', 'Model %s is %s', 503),
  NO_DEFAULT_MODEL: createError('NO_DEFAULT_MODEL', 'No model named in the request and no default model: %s', 400),
  INFERENCE_FAILED: createError('INFERENCE_FAILED', 'Inference failed: %s', 500),
  INFERENCE_STALLED: createError('INFERENCE_STALLED', 'Inference stalled: %s', 503),
  MODEL_CONTROL_DISABLED: createError('MODEL_CONTROL_DISABLED', 'Model control is off (model_control: none): %s', 409),
  MODEL_LOAD_FAILED: createError('MODEL_LOAD_FAILED', 'Model %s failed to load: %s', 422),
  INVALID_TRAFFIC_SPLIT: createError('INVALID_TRAFFIC_SPLIT', 'Invalid traffic split: %s', 400),
  // admission
  OVERLOADED: createError('OVERLOADED', 'The server is overloaded: %s', 503),
  DEADLINE_EXCEEDED: createError('DEADLINE_EXCEEDED', 'The request deadline passed %s', 504),
  // jobs
  QUEUE_FULL: createError('QUEUE_FULL', 'The job queue is full', 503),
  QUEUE_UNAVAILABLE: createError('QUEUE_UNAVAILABLE', 'The job queue is unavailable: %s', 503),
  QUEUE_CLOSED: createError('QUEUE_CLOSED', 'The job queue is closed', 503),
  INVALID_JOB: createError('INVALID_JOB', 'Invalid job: %s', 400),
  JOB_NOT_FOUND: createError('JOB_NOT_FOUND', 'No job %s', 404),
  // stream and uploads
  INVALID_FRAME: createError('INVALID_FRAME', 'Invalid stream frame: %s', 400),
  INVALID_MESSAGE: createError('INVALID_MESSAGE', 'Invalid stream message: %s', 400),
  UPLOAD_TOO_LARGE: createError('UPLOAD_TOO_LARGE', 'The upload exceeds the limit of %s bytes', 413),
  UPLOAD_NOT_FOUND: createError('UPLOAD_NOT_FOUND', 'No upload %s', 404),
  UPLOAD_CONFLICT: createError('UPLOAD_CONFLICT', 'Upload offset mismatch: %s', 409),
  INVALID_UPLOAD: createError('INVALID_UPLOAD', 'Invalid upload: %s', 400),
  // store
  STORE_UNAVAILABLE: createError('STORE_UNAVAILABLE', 'The result store is unavailable: %s', 503),
  RESULT_NOT_FOUND: createError('RESULT_NOT_FOUND', 'No stored result %s', 404),
  LINE_NOT_FOUND: createError('LINE_NOT_FOUND', 'No frame of line %s has arrived yet', 404),
  // snapshots (GET /v1/results/:id/image, /v1/lines/:line/latest.jpg)
  SNAPSHOT_NOT_FOUND: createError('SNAPSHOT_NOT_FOUND', 'No image was kept of result %s', 404),
  SNAPSHOT_GONE: createError('SNAPSHOT_GONE', 'The image of result %s was deleted (%s); the result is kept', 410),
  LATEST_FRAME_NOT_FOUND: createError('LATEST_FRAME_NOT_FOUND', 'No frame of line %s yet', 404),
  // reviews (POST /v1/results/:id/review)
  INVALID_REVIEW: createError('INVALID_REVIEW', 'Invalid review: %s', 400),
  // history (GET /v1/stats/history)
  HISTORY_RANGE_TOO_LONG: createError('HISTORY_RANGE_TOO_LONG', 'The history range of %s is longer than the %s kept (history_rollup_retention_ms)', 400),
  HISTORY_TOO_MANY_POINTS: createError(
    'HISTORY_TOO_MANY_POINTS',
    'The history answer would hold %s points, more than %s (history_max_points): use step=%s or more, or a shorter range',
    400,
  ),
  // factory outputs (GET /v1/outputs/…)
  OUTPUT_NOT_FOUND: createError('OUTPUT_NOT_FOUND', 'No output %s is configured in this process', 404),
  OUTPUT_HAS_NO_OUTBOX: createError('OUTPUT_HAS_NO_OUTBOX', 'The %s output keeps no outbox (it serves its state to clients): no dead letters', 404),
  DEAD_LETTER_NOT_FOUND: createError('DEAD_LETTER_NOT_FOUND', 'No dead letter %s in the %s output', 404),
  // pulled sources (/v1/sources, the `sources` config key)
  INVALID_SOURCE: createError('INVALID_SOURCE', 'Invalid source: %s', 400),
  SOURCE_NOT_FOUND: createError('SOURCE_NOT_FOUND', 'No source %s in this process', 404),
  SOURCE_EXISTS: createError('SOURCE_EXISTS', 'A source %s already exists: delete it first', 409),
  // identity and limits
  UNAUTHORIZED: createError('UNAUTHORIZED', 'Authentication required: %s', 401),
  FORBIDDEN: createError('FORBIDDEN', 'The %s role is needed for this route', 403),
  RATE_LIMITED: createError('RATE_LIMITED', 'Rate limit exceeded: %s', 429),
  TOO_MANY_CONNECTIONS: createError('TOO_MANY_CONNECTIONS', 'Too many connections: %s', 503),
  CONNECTION_NOT_FOUND: createError('CONNECTION_NOT_FOUND', 'No open connection %s', 404),
  REQUEST_TIMEOUT: createError('REQUEST_TIMEOUT', 'The request was not received in time: %s', 408),
  HEADERS_TOO_LARGE: createError('HEADERS_TOO_LARGE', 'The request headers exceed %s bytes', 431),
  // the dashboard (GET /)
  DASHBOARD_NOT_BUILT: createError(
    'DASHBOARD_NOT_BUILT',
    'The dashboard is not built: run `npm run build` (or `npm run build:web`); it is served as soon as it is built',
    // Not 503: waiting does not help (a 503 promises Retry-After), building does.
    404,
  ),
  // server
  SHUTTING_DOWN: createError('SHUTTING_DOWN', 'The server is shutting down', 503),
  INTERNAL_ERROR: createError('INTERNAL_ERROR', 'Internal error', 500),
} as const;

export type ErrorCode = keyof typeof Errors;

export const ERROR_CODES = Object.keys(Errors) as ErrorCode[];

// (Which codes a client may retry is part of the wire contract: RETRYABLE_CODES in src/protocol/errors.ts.)

/** The HTTP status of each code, read from the registry's classes. */
export const ERROR_STATUS: Readonly<Record<ErrorCode, number>> = Object.fromEntries(
  ERROR_CODES.map((code) => [code, (new Errors[code]() as { statusCode?: number }).statusCode ?? 500]),
) as Record<ErrorCode, number>;

/** An error as a client gets it: the HTTP status and the fields of `{error: {code, message}}`. */
export interface ApiError {
  statusCode: number;
  code: string;
  message: string;
}

const INTERNAL: ApiError = { statusCode: 500, code: 'INTERNAL_ERROR', message: 'Internal error' };

/**
 * Sightline's own errors (any error whose `code` is in the registry, whatever threw it)
 * as the client gets them; undefined for anything else. The one place every way out
 * (HTTP error handler, tus uploads, stream messages) reads an error from.
 */
export function apiErrorOf(err: unknown): ApiError | undefined {
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown } | null | undefined;
  if (typeof e?.code !== 'string' || !Object.hasOwn(ERROR_STATUS, e.code)) return undefined;
  const statusCode = typeof e.statusCode === 'number' ? e.statusCode : ERROR_STATUS[e.code as ErrorCode];
  return { statusCode, code: e.code, message: String(e.message) };
}

/** Any error as the client gets it: Sightline's own keep code, status and message; anything else is a 500 INTERNAL_ERROR whose details stay in the log. */
export function toApiError(err: unknown): ApiError {
  return apiErrorOf(err) ?? { ...INTERNAL };
}
