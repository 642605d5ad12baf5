/**
 * What the HTTP routes answer, as JSON Schema for the OpenAPI document
 * (/openapi.json, /docs). These are documentation: the app serializes every
 * answer with JSON.stringify (src/server/openapi.ts), so a field missing here
 * is never removed from an answer. The wire types in src/protocol are the
 * contract; the checks at the end fail to compile when these drift from them.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { CLIENT_KINDS, TRANSPORTS } from '../connections/index.js';
import { ErrorResponseSchema } from '../protocol/error-response.js';
import { VerdictRuleSchema } from '../verdict/rules.js';
import type { JobStatus, SubmittedJob } from '../protocol/jobs.js';
import { PRIORITIES } from '../protocol/options.js';
import { CAMERA_STATES, type LineList } from '../protocol/lines.js';
import {
  RESULT_SOURCES,
  REVIEW_MAX_BOXES,
  REVIEW_MAX_LABEL,
  REVIEW_MAX_NOTE,
  REVIEW_STATUSES,
  VERDICTS,
  type DetectionResult,
  type Review,
  type ReviewInput,
} from '../protocol/results.js';

/** One of fixed strings, as a plain `enum` (a union of literals would read as anyOf in the document). */
const literals = <T extends string>(values: readonly T[]) => Type.Unsafe<T>({ type: 'string', enum: [...values] });
const nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const isoTime = (description?: string) => Type.String({ format: 'date-time', ...(description ? { description } : {}) });

export { ErrorResponseSchema, errorResponse } from '../protocol/error-response.js';

const ERROR_PROPERTIES = JSON.stringify(ErrorResponseSchema.properties);
/** Whether a response schema is the shared error body (errorResponse). */
export function isErrorResponse(schema: unknown): boolean {
  const properties = (schema as { properties?: unknown } | undefined)?.properties;
  return properties !== undefined && JSON.stringify(properties) === ERROR_PROPERTIES;
}

const BoxSchema = Type.Object(
  { x1: Type.Number(), y1: Type.Number(), x2: Type.Number(), y2: Type.Number() },
  { description: 'In original image pixels, clipped to the image' },
);

const MaskSchema = Type.Object(
  {
    x: Type.Integer(),
    y: Type.Integer(),
    width: Type.Integer(),
    height: Type.Integer(),
    counts: Type.Array(Type.Integer({ minimum: 0 })),
  },
  {
    description:
      'Uncompressed RLE over the region x, y, width × height of original image pixels, row-major, runs alternating background / mask starting with background (docs/models.md#task-types)',
  },
);

const DetectionSchema = Type.Object({
  label: Type.String(),
  class_id: Type.Integer(),
  score: Type.Number({ minimum: 0, maximum: 1 }),
  box: BoxSchema,
  mask: Type.Optional(MaskSchema),
  area_px: Type.Optional(Type.Integer({ minimum: 0, description: 'Segmentation models: mask pixels, in original image pixels' })),
});

const ClassScoreSchema = Type.Object({
  label: Type.String(),
  class_id: Type.Integer(),
  score: Type.Number({ minimum: 0, maximum: 1, description: 'Probability' }),
});

const StageTimingsSchema = Type.Object(
  {
    queue: Type.Number(),
    decode: Type.Number(),
    preprocess: Type.Number(),
    infer: Type.Number(),
    postprocess: Type.Number(),
    total: Type.Number(),
  },
  { description: 'Milliseconds per pipeline stage and in all' },
);

const TilingSummarySchema = Type.Object(
  {
    count: Type.Integer({ description: 'Inferences run: the tiles plus the full view, if any' }),
    scale: Type.Number({ description: 'Image pixels per model-input pixel in the tiles (1: native resolution)' }),
    tiles: Type.Array(
      Type.Object({
        x: Type.Integer(),
        y: Type.Integer(),
        width: Type.Integer(),
        height: Type.Integer(),
        full_view: Type.Boolean({ description: 'The downscaled view of the whole image' }),
        infer_ms: Type.Number({ description: 'Inference time of the batch the tile ran in (shared by its batch)' }),
        batch_size: Type.Integer(),
      }),
    ),
  },
  { description: 'How the image was tiled (docs/models.md#tiled-inference); absent when it was not' },
);

const ImageQualitySchema = Type.Object(
  {
    sharpness: Type.Number({ description: 'Variance of the Laplacian of the grey model input: low is blurred, very high is noise' }),
    brightness: Type.Number({ description: 'Mean grey level, 0–255' }),
    contrast: Type.Number({ description: 'Standard deviation of the grey level' }),
    dark_fraction: Type.Number({ minimum: 0, maximum: 1, description: 'Share of pixels at grey ≤ 5' }),
    bright_fraction: Type.Number({ minimum: 0, maximum: 1, description: 'Share of pixels at grey ≥ 250' }),
    reasons: Type.Array(Type.String(), { description: 'One per bound of the envelope crossed, e.g. `blurred: sharpness 12.3 < 40`; empty inside it' }),
  },
  { description: 'Image-quality measures of the model input; present when the model has a quality envelope (docs/models.md#image-quality-gate)' },
);

const VerdictReasonSchema = Type.Object({
  rule: Type.String({ description: "The rule's name (`verdict.ng` for the label-and-score rule)" }),
  outcome: literals(['ng', 'check'] as const),
  count: Type.Integer({ minimum: 0, description: 'Detections that met the rule (for check: whose outcome was unknown)' }),
  detections: Type.Array(Type.Integer({ minimum: 0 }), { description: 'Their indices in `detections`' }),
  detail: Type.String({ description: 'What was measured against what, for people' }),
});

export const DetectionResultSchema = Type.Object(
  {
    request_id: Type.String({ description: "The request's X-Request-Id (a job's id for job results)" }),
    line: Type.String(),
    camera: Type.String({ description: 'The camera of that line (`default` when the request named none)' }),
    model: Type.Object({ name: Type.String(), version: Type.String() }),
    image: Type.Object({ width: Type.Integer(), height: Type.Integer() }),
    detections: Type.Array(DetectionSchema),
    classes: Type.Optional(
      Type.Array(ClassScoreSchema, { description: 'Classification models: the top classes, most probable first (`top_k`); `detections` is empty' }),
    ),
    verdict: Type.Unsafe<DetectionResult['verdict']>({
      ...literals(VERDICTS),
      description:
        "check: the image is outside the model's image-quality envelope (see quality.reasons), whatever the model saw; else ng: a verdict rule of the model fired (see verdict_reasons); check: a rule that could have fired could not be evaluated; ok: neither",
    }),
    timings_ms: StageTimingsSchema,
    quality: Type.Optional(ImageQualitySchema),
    tiles: Type.Optional(TilingSummarySchema),
    verdict_reasons: Type.Optional(
      Type.Array(VerdictReasonSchema, {
        description:
          'Which verdict rules made the verdict ng (or check: a rule that could not be evaluated); left out when none fired (docs/models.md#verdict-rules)',
      }),
    ),
  },
  { description: 'A detection result' },
);

const ReviewBoxSchema = Type.Object(
  {
    label: Type.String({ minLength: 1, maxLength: REVIEW_MAX_LABEL }),
    class_id: Type.Optional(Type.Integer({ minimum: 0, description: "The model's class index; leave out for a new label" })),
    box: Type.Object(
      { x1: Type.Number(), y1: Type.Number(), x2: Type.Number(), y2: Type.Number() },
      { description: 'In original image pixels: 0 ≤ x1 < x2 ≤ width, 0 ≤ y1 < y2 ≤ height' },
    ),
  },
  { additionalProperties: false },
);

const ReviewStatusSchema = literals(REVIEW_STATUSES);

/** The body of POST /v1/results/:id/review (validated: unknown fields are refused). */
export const ReviewInputSchema = Type.Object(
  {
    status: Type.Unsafe<ReviewInput['status']>({
      ...ReviewStatusSchema,
      description: 'confirmed: the detections are right; false_call: the model flagged no defect; missed: the model missed one (give `boxes`)',
    }),
    note: Type.Optional(Type.String({ maxLength: REVIEW_MAX_NOTE })),
    boxes: Type.Optional(
      Type.Array(ReviewBoxSchema, {
        maxItems: REVIEW_MAX_BOXES,
        description: 'The right boxes, when they differ from the detections (exported instead of them)',
      }),
    ),
  },
  { additionalProperties: false, description: 'A review of a stored result' },
);

export const ReviewSchema = Type.Object(
  {
    status: ReviewStatusSchema,
    note: nullable(Type.String()),
    boxes: nullable(Type.Array(ReviewBoxSchema)),
    reviewer: Type.String({ description: 'API key name or JWT subject of the reviewer' }),
    reviewed_at: isoTime(),
  },
  { description: "A result's review (the latest replaces the one before)" },
);

export const StoredResultSchema = Type.Composite(
  [DetectionResultSchema, Type.Object({ source: literals(RESULT_SOURCES), created_at: isoTime(), review: nullable(ReviewSchema) })],
  { description: 'A stored detection result; `review` is null until someone reviews it' },
);

export const ResultPageSchema = Type.Object(
  {
    results: Type.Array(StoredResultSchema),
    next_cursor: nullable(Type.String({ description: '`cursor` of the next page; null on the last page' })),
  },
  { description: 'A page of stored results, newest first' },
);

const CountSchema = Type.Integer({ minimum: 0 });

export const LineStatsSchema = Type.Object(
  {
    line: Type.String(),
    from: nullable(isoTime()),
    to: nullable(isoTime()),
    total: CountSchema,
    verdicts: Type.Object({ ok: CountSchema, ng: CountSchema, check: CountSchema }),
    labels: Type.Object(
      {},
      {
        description: 'By label: detections with it, and results with at least one',
        additionalProperties: Type.Object({ detections: CountSchema, results: CountSchema }),
      },
    ),
  },
  { description: 'Counts by verdict and label over a window' },
);

export const SubmittedJobSchema = Type.Object(
  {
    job_id: Type.String(),
    status: Type.Literal('queued'),
    duplicate: Type.Boolean({ description: 'True when the Idempotency-Key was taken already: job_id is the first job' }),
  },
  { description: 'The job is durable; follow it at Location' },
);

export const JobStatusSchema = Type.Object(
  {
    job_id: Type.String(),
    state: literals(['queued', 'running', 'done', 'dead'] as const),
    line: Type.String(),
    priority: literals(PRIORITIES),
    attempts: CountSchema,
    created_at: isoTime(),
    updated_at: isoTime(),
    last_error: Type.Optional(Type.String()),
    dead_reason: Type.Optional(literals(['failed', 'expired'] as const)),
    result: Type.Optional(DetectionResultSchema),
  },
  { description: 'A job and, once done, its result' },
);

export const DeadLettersSchema = Type.Object(
  {
    jobs: Type.Array(
      Type.Object({
        id: Type.String(),
        line: Type.String(),
        priority: literals(PRIORITIES),
        attempts: CountSchema,
        reason: literals(['failed', 'expired'] as const),
        lastError: nullable(Type.String()),
        createdAt: Type.Integer({ description: 'Epoch milliseconds' }),
        diedAt: Type.Integer({ description: 'Epoch milliseconds when it was dead-lettered' }),
      }),
    ),
  },
  { description: 'Dead-lettered jobs, with their last error' },
);

export const RequeuedJobSchema = Type.Object(
  { job_id: Type.String(), status: Type.Literal('queued') },
  { description: 'Back in the queue; follow it at Location' },
);

export const PurgedSchema = Type.Object({ purged: CountSchema }, { description: 'How many dead letters were removed' });

const TrafficSplitSchema = Type.Object(
  {
    primary: Type.Optional(Type.String({ description: 'Answers what no canary or pin takes; absent: the newest READY version' })),
    canary: Type.Optional(
      Type.Object({
        version: Type.String(),
        percent: Type.Number({ minimum: 0, maximum: 100 }),
        by: literals(['request', 'line'] as const),
      }),
    ),
    shadow: Type.Optional(Type.Object({ version: Type.String(), percent: Type.Number({ minimum: 0, maximum: 100 }) })),
    pins: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Line → version' })),
  },
  { description: 'How requests that name no version are shared among the versions' },
);

function ModelControlSchema() {
  return Type.Object({
    policy: Type.String({ description: 'all, latest:N or specific:V1,V2 (model_version_policy)' }),
    serving: Type.Optional(Type.String({ description: 'The version answering now' })),
    unloaded: Type.Optional(Type.Boolean()),
    extra: Type.Optional(Type.Array(Type.String(), { description: 'Versions loaded beyond the policy' })),
    excluded: Type.Optional(Type.Array(Type.String(), { description: 'Versions unloaded by a call' })),
    traffic: Type.Optional(TrafficSplitSchema),
  });
}

export const ModelVersionInputSchema = Type.Object(
  { version: Type.Optional(Type.String({ description: 'One version; absent: the model as its policy says' })) },
  { additionalProperties: false },
);

export const TrafficPatchSchema = Type.Object(
  {
    primary: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    canary: Type.Optional(
      Type.Union([
        Type.Object(
          {
            version: Type.String(),
            percent: Type.Number({ minimum: 0, maximum: 100 }),
            by: Type.Optional(literals(['request', 'line'] as const)),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ]),
    ),
    shadow: Type.Optional(
      Type.Union([Type.Object({ version: Type.String(), percent: Type.Number({ minimum: 0, maximum: 100 }) }, { additionalProperties: false }), Type.Null()]),
    ),
    pins: Type.Optional(Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()])),
  },
  { additionalProperties: false, description: 'A key given replaces that part of the split, null clears it, absent keeps it' },
);

export const TrafficResultSchema = Type.Object(
  { model: Type.String(), serving: Type.Optional(Type.String()), traffic: TrafficSplitSchema },
  { description: 'The split now in force in this process (others follow within model_sync_interval_ms)' },
);

export const ModelListSchema = Type.Object(
  {
    models: Type.Array(
      Type.Object({
        name: Type.String(),
        version: Type.String(),
        state: literals(['LOADING', 'READY', 'FAILED', 'UNLOADING', 'UNAVAILABLE'] as const),
        reason: Type.Optional(
          Type.String({
            description: 'Why it is not READY (FAILED: the load error; UNAVAILABLE: unloaded, left out by the version policy, or files not complete yet)',
          }),
        ),
        serving: Type.Boolean({ description: 'The version that answers requests naming the model without a version (before any canary share)' }),
        in_flight: Type.Integer({ description: 'Requests holding this version now' }),
        since: isoTime('When the state last changed'),
        default: Type.Boolean({ description: 'The model used when a request names none' }),
        description: Type.Optional(Type.String()),
        format: Type.Optional(Type.String({ description: 'yolov8, yolov5 or end2end' })),
        task: Type.Optional(Type.String({ description: 'detect, classify or segment: from model.json `task` or the outputs (docs/models.md#task-types)' })),
        format_detected: Type.Optional(Type.Boolean({ description: 'True when the format came from the output shape' })),
        input: Type.Optional(Type.Object({ width: Type.Integer(), height: Type.Integer() })),
        labels: Type.Optional(Type.Array(Type.String())),
        thresholds: Type.Optional(Type.Object({ conf: Type.Number(), iou: Type.Number(), max_detections: Type.Integer() })),
        verdict: Type.Optional(
          Type.Object({
            ng: Type.Object({}, { additionalProperties: Type.Number(), description: 'Label → score that makes a result NG' }),
            rules: Type.Optional(
              Type.Array(VerdictRuleSchema, { description: 'Verdict rules of model.json, before any line changes them (docs/models.md#verdict-rules)' }),
            ),
          }),
        ),
      }),
    ),
    control: Type.Object(
      {
        mode: literals(['poll', 'explicit', 'none'] as const),
        models: Type.Record(Type.String(), ModelControlSchema()),
      },
      { description: 'model_control and, per model, its version policy, overrides and traffic split' },
    ),
  },
  { description: 'Every model version in the repository' },
);

export const AlertListSchema = Type.Object(
  {
    alerts: Type.Array(
      Type.Object({
        name: Type.String(),
        severity: literals(['warning', 'critical'] as const),
        state: literals(['inactive', 'pending', 'firing'] as const),
        since: nullable(isoTime('When the current state began')),
        value: nullable(Type.Number({ description: "The rule's last value" })),
        threshold: Type.Number(),
        unit: literals(['ratio', 'seconds', 'count', 'per_second'] as const),
        for_ms: Type.Number(),
        summary: Type.String(),
        description: Type.String(),
        evaluated_at: nullable(isoTime()),
      }),
    ),
    eval_interval_ms: Type.Number(),
  },
  { description: 'Every alert rule with its state' },
);

const AlertStateSchema = literals(['inactive', 'pending', 'firing'] as const);
export const AlertHistorySchema = Type.Object(
  {
    changes: Type.Array(
      Type.Object({
        at: isoTime(),
        name: Type.String(),
        severity: literals(['warning', 'critical'] as const),
        from: AlertStateSchema,
        to: AlertStateSchema,
        value: nullable(Type.Number({ description: "The rule's value at the change" })),
        description: Type.String(),
      }),
    ),
  },
  { description: 'State changes of the alert rules, newest first (kept in memory: alert_history_size)' },
);

export const LivenessSchema = Type.Object({ status: Type.Literal('ok') }, { description: 'The process answers' });

const CheckSchema = Type.Object({
  name: Type.String({ description: 'default_model, model:<name>:<version>, or a dependency (store, queue, broker, disk)' }),
  status: literals(['pass', 'fail'] as const),
  critical: Type.Boolean({ description: 'Whether this check decides readiness' }),
  state: Type.Optional(Type.String({ description: 'Models: LOADING, READY, FAILED; dependencies: starting, up, down' })),
  reason: Type.Optional(Type.String()),
  detail: Type.Optional(Type.String()),
  since: Type.Optional(isoTime()),
  last_checked: Type.Optional(isoTime()),
  test_inference: Type.Optional(Type.Object({ ok: Type.Boolean(), at: isoTime(), duration_ms: Type.Number(), reason: Type.Optional(Type.String()) })),
});

export const ReadinessSchema = Type.Object({
  status: literals(['ready', 'not_ready'] as const),
  waiting_for: Type.Optional(Type.Array(Type.String(), { description: 'The failing critical checks' })),
  reason: Type.Optional(Type.String()),
  checks: Type.Array(CheckSchema),
});

const ByKey = (description: string) => Type.Object({}, { additionalProperties: CountSchema, description });

export const ConnectionListSchema = Type.Object(
  {
    connections: Type.Array(
      Type.Object({
        id: Type.String(),
        transport: literals(TRANSPORTS),
        remote_address: Type.String(),
        remote_port: nullable(Type.Integer()),
        user_agent: nullable(Type.String()),
        key: nullable(Type.String({ description: 'API key name or JWT subject' })),
        client_kind: literals(CLIENT_KINDS),
        line: nullable(Type.String()),
        priority: literals(['high', 'normal'] as const),
        probe: Type.Boolean(),
        opened_at: isoTime(),
        last_activity_at: isoTime(),
        idle_ms: Type.Number(),
        requests: CountSchema,
        in_flight: CountSchema,
        bytes_in: CountSchema,
        bytes_out: CountSchema,
      }),
    ),
    matched: Type.Integer({ description: 'Connections that match the filters (before limit)' }),
    counts: Type.Object({
      total: CountSchema,
      by_transport: ByKey('Open connections by transport'),
      by_client_kind: ByKey('Open connections by client kind'),
      refused: CountSchema,
    }),
    limits: ByKey('The connection limits as configured (max_connections, …)'),
  },
  { description: 'Open connections, oldest first, with counts over all of them' },
);

export const UploadStatusSchema = Type.Object(
  {
    upload_id: Type.String(),
    state: literals(['uploading', 'complete', 'finished'] as const),
    offset: CountSchema,
    length: nullable(CountSchema),
    metadata: Type.Object({}, { additionalProperties: nullable(Type.String()) }),
    expires_at: Type.Optional(isoTime()),
    job_id: Type.Optional(Type.String()),
    job_location: Type.Optional(Type.String()),
  },
  { description: 'Where an upload stands' },
);

const RatesSchema = Type.Object(
  {
    received: Type.Number({ minimum: 0 }),
    processed: Type.Number({ minimum: 0 }),
    dropped: Type.Number({ minimum: 0 }),
  },
  { description: 'Frames per second over the recent window (`window_s`), every process together' },
);
const LastHourSchema = Type.Object(
  { ok: CountSchema, ng: CountSchema, ng_rate: nullable(Type.Number({ minimum: 0, maximum: 1 })) },
  { description: 'Verdicts over the last hour' },
);
const CameraStatusSchema = Type.Object(
  {
    line: Type.String(),
    camera: Type.String(),
    state: literals(CAMERA_STATES),
    since: isoTime(),
    last_frame_at: nullable(isoTime()),
    first_seen_at: isoTime(),
    fps: RatesSchema,
    latency_p95_ms: nullable(Type.Number({ minimum: 0 })),
    last_hour: LastHourSchema,
  },
  { description: 'A camera of a line: its state and figures' },
);
const ReviewCountsSchema = Type.Object(
  { confirmed: CountSchema, false_call: CountSchema, missed: CountSchema, unreviewed: CountSchema },
  { description: "Review counts of the line's results over the last hour" },
);
export const LineStatusSchema = Type.Object(
  {
    line: Type.String(),
    state: literals(CAMERA_STATES),
    last_frame_at: nullable(isoTime()),
    fps: RatesSchema,
    latency_p95_ms: nullable(Type.Number({ minimum: 0 })),
    last_hour: LastHourSchema,
    reviews: nullable(ReviewCountsSchema),
    cameras: Type.Array(CameraStatusSchema),
  },
  { description: 'A line (online while any of its cameras is) with its cameras' },
);
export const LineListSchema = Type.Object(
  {
    at: isoTime(),
    window_s: Type.Number({ description: 'The window of `fps` and `latency_p95_ms`, in seconds' }),
    lines: Type.Array(LineStatusSchema),
  },
  { description: 'Every line and camera the server has seen' },
);

/** What POST /v1/detect and POST /v1/jobs read: one raw image (sniffed), or multipart with field `image` (test/openapi.test.ts keeps it equal to the parsers). */
export const IMAGE_BODY_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'application/octet-stream', 'multipart/form-data'];

/** A success answer without a body (204, tus answers). */
export function emptyResponse(description: string) {
  return { type: 'null', description } as const;
}

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
/** Compile-time: the documented shapes are the protocol's. */
export type DocumentedShapesMatchProtocol = [
  Assert<Same<Static<typeof DetectionResultSchema>, DetectionResult>>,
  Assert<Same<Static<typeof LineListSchema>, LineList>>,
  Assert<Same<Static<typeof ReviewSchema>, Review>>,
  Assert<Same<Static<typeof ReviewInputSchema>, ReviewInput>>,
  Assert<Same<Static<typeof SubmittedJobSchema>, SubmittedJob>>,
  Assert<Same<Static<typeof JobStatusSchema>, JobStatus>>,
];

/** GET /v1/outputs. */
export const OutputListSchema = Type.Object(
  {
    outputs: Type.Array(
      Type.Object({
        name: Type.String({ description: '`mqtt`, `webhook`, `opcua` or `modbus`' }),
        scope: literals(['local', 'bus'] as const),
        connected: Type.Boolean({ description: 'Connected to its peer (or listening, for a server)' }),
        detail: Type.String(),
        outbox_depth: nullable(Type.Integer({ description: 'Messages waiting; null for an output without an outbox' })),
        dead_letters: nullable(Type.Integer({ description: 'Dead letters kept (at most output_dead_letters_max); null without an outbox' })),
      }),
    ),
  },
  { description: 'The outputs of this process' },
);

const DeadLetterSchema = Type.Object({
  seq: Type.Integer({ description: 'The message number, for replaying one' }),
  key: Type.String({ description: "The idempotency key (a result's request id)" }),
  attempts: Type.Integer(),
  created_at: isoTime(),
  dead_at: isoTime(),
  last_error: nullable(Type.String()),
  payload: Type.Unknown({ description: 'The message as it would be sent (JSON), secrets such as URL credentials and queries left out' }),
});

/** GET /v1/outputs/:name/dead-letters. */
export const DeadLetterListSchema = Type.Object({ dead_letters: Type.Array(DeadLetterSchema) }, { description: 'Dead letters, newest first' });

/** POST /v1/outputs/:name/dead-letters/replay: one (`seq`) or all. */
export const ReplayInputSchema = Type.Object({ seq: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false });
export const ReplayResultSchema = Type.Object({ replayed: Type.Integer({ description: 'Dead letters put back in the outbox' }) }, { description: 'Replayed' });
