import type { BaseLogger } from 'pino';
import type { Config } from '../config/schema.js';
import { detect, STAGES } from '../inference/detector.js';
import type { ModelRepository } from '../inference/repository.js';
import type { Metrics } from '../metrics/metrics.js';
import type { ResultStore } from '../store/index.js';
import { resultEvent, type EventBus } from '../events/index.js';
import type { InferenceOptions } from '../protocol/options.js';
import type { DetectionResult, ImageQuality, ResultSource } from '../protocol/results.js';
import { DEFAULT_CAMERA } from '../protocol/options.js';
import type { InspectionObserver } from './observers.js';
import { ShadowRecorder } from './shadow.js';
import type { ReadyModel } from '../inference/repository.js';
import type { DetectOptions, DetectionOutcome } from '../inference/detector.js';
import { effectiveEnvelope, gatedVerdict, lineOverride, measureLetterboxed, qualityReasons, type QualityMeasures } from '../inference/quality.js';
import type { Letterbox } from '../inference/letterbox.js';
import { judge } from '../verdict/judge.js';
import { recheckVerdictSettings } from '../verdict/settings.js';

const recorders = new WeakMap<Metrics, ShadowRecorder>();

/**
 * Runs the same image on the shadow version after the answer, at low priority and
 * off the caller's path: its result is compared with the answer and counted,
 * never returned, stored or published. A shed or failed shadow run is counted only.
 */
function shadowRun(
  deps: InspectionDeps,
  shadow: ReadyModel,
  inspection: Inspection,
  options: Omit<DetectOptions, 'priority' | 'deadline'>,
  answer: DetectionOutcome,
): void {
  const { metrics, models } = deps;
  let recorder = recorders.get(metrics);
  if (!recorder) recorders.set(metrics, (recorder = new ShadowRecorder(metrics)));
  const rec = recorder;
  const release = models.lease(shadow);
  detect(shadow, inspection.image, { ...options, priority: 'low' })
    .then((outcome) => rec.compared(shadow.name, shadow.version, answer, outcome))
    .catch((err: Error) => {
      rec.failed(shadow.name, shadow.version);
      inspection.logger.info({ event: 'shadow_failed', model: shadow.name, version: shadow.version, reason: err.message }, 'shadow run failed');
    })
    .finally(release);
}

/** What an inspection needs, handed in by whoever built it (the server, the worker, a test). */
export interface InspectionDeps {
  config: Pick<Config, 'max_image_pixels' | 'store_sync_results'> & Partial<Pick<Config, 'quality_overrides' | 'verdict_rules_file'>>;
  models: ModelRepository;
  metrics: Metrics;
  store: ResultStore;
  events: EventBus;
  /** Told of every result with its image (snapshots, line registry, history); none when left out. */
  observers?: readonly InspectionObserver[];
}

/** One image to inspect, as one of the three paths received it. */
export interface Inspection {
  /** The path: POST /v1/detect ("sync"), a job or upload ("job"), a /v1/stream frame ("stream"). */
  source: ResultSource;
  /** The result's request_id: the request id, the job id, a frame's fresh id. */
  requestId: string;
  line: string;
  /** The camera of that line; DEFAULT_CAMERA when left out. */
  camera?: string;
  image: Buffer;
  options: Omit<InferenceOptions, 'line'>;
  /** Absolute deadline in performance.now() milliseconds. */
  deadline?: number;
  /** A logger that already names the request (request.log, or a child with job_id / request_id). */
  logger: Pick<BaseLogger, 'info' | 'error'>;
  /** Further fields of the path's log line (the stream's frame_id, the job's attempt). */
  logFields?: Record<string, unknown>;
}

export interface Inspected {
  result: DetectionResult;
  /** Jobs: false when a redelivered job's result was already stored. Others: undefined (stored in the background, if at all). */
  stored?: boolean;
}

/**
 * How each path treats its result. They differ on purpose:
 * - sync and stream answer the caller whatever happens to the store: storing is
 *   optional (store_sync_results) and runs in the background, a failure is logged
 *   and counted, never turned into a failed detection;
 * - a job has no caller waiting: its result is stored first (a failure fails the
 *   job, which the queue retries), and published only when newly stored, so that
 *   a redelivered job announces nothing twice;
 * - the log line is the one `logs analyze` reads per path: `detection_result`,
 *   or `job_done` with `duplicate`.
 * The remaining flags keep each path's metrics and log fields as they were
 * before the paths met here (jobs never fed the stage histogram; only the
 * stream's detection_result carried duration_ms).
 */
const PATHS: Record<ResultSource, { storeFirst: boolean; stageDurations: boolean; logDuration: boolean }> = {
  sync: { storeFirst: false, stageDurations: true, logDuration: false },
  stream: { storeFirst: false, stageDurations: true, logDuration: true },
  job: { storeFirst: true, stageDurations: false, logDuration: true },
};

/**
 * The one inspection path: detection, metrics (stage durations, verdicts,
 * detections), result, store, result event, log. POST /v1/detect, the job
 * processor and the stream session call it and keep only their way of answering.
 */
export async function inspect(deps: InspectionDeps, inspection: Inspection): Promise<Inspected> {
  const { config, models, metrics, store, events } = deps;
  const { source, requestId, line, options, logger } = inspection;
  const path = PATHS[source];
  // The version that answers (traffic split, canary, pinned line) is held until the answer is in: unloading waits for it.
  const routed = models.route(options.model, { requestId, line });
  const { model } = routed;
  const detectOptions = {
    conf: options.conf,
    iou: options.iou,
    maxDetections: options.max_det,
    agnostic: options.agnostic,
    maxPixels: config.max_image_pixels,
    priority: options.priority,
    // Edge resize: the client sent the image scaled down; boxes go back to the original's pixels.
    sourceSize: options.source_width && options.source_height ? { width: options.source_width, height: options.source_height } : undefined,
    // Tiled inference: the shadow run gets the same, so that its comparison is like for like.
    tiling: options.tiling,
    // Classification and segmentation models (docs/models.md#task-types).
    topK: options.top_k,
    masks: options.masks,
  };
  // The image-quality gate: measured on the model input in this thread, before the
  // batcher transfers its buffer to the worker; nothing is measured without an envelope.
  const envelope = effectiveEnvelope(model.manifest.quality, lineOverride(config.quality_overrides, line));
  const seen: { measures?: QualityMeasures } = {};
  const onPrepared = envelope
    ? (pixels: Uint8Array, lb: Letterbox) => {
        seen.measures = measureLetterboxed(pixels, lb);
      }
    : undefined;
  let outcome;
  try {
    outcome = await detect(model, inspection.image, { ...detectOptions, deadline: inspection.deadline, onPrepared });
  } finally {
    routed.release();
  }
  metrics.versionRequests.inc({ model: model.name, version: model.version, route: routed.role });
  if (routed.shadow) shadowRun(deps, routed.shadow, inspection, detectOptions, outcome);
  if (path.stageDurations) {
    for (const stage of STAGES) metrics.stageDuration.observe({ model: model.name, stage }, outcome.timings_ms[stage] / 1000);
  }
  const camera = inspection.camera ?? DEFAULT_CAMERA;
  const { measures } = seen;
  const quality: ImageQuality | undefined = envelope && measures ? { ...measures, reasons: qualityReasons(measures, envelope) } : undefined;
  // Verdict rules where the image came from: the line's and camera's scale, polygons and rule
  // changes (docs/models.md#verdict-rules); a classification model keeps its own verdict.
  const settingsChange = recheckVerdictSettings(config.verdict_rules_file);
  if (settingsChange && 'rejected' in settingsChange) {
    logger.error(
      { event: 'verdict_rules_file_rejected', reason: settingsChange.rejected },
      'verdict_rules_file change not applied: the settings before it still serve',
    );
  } else if (settingsChange) logger.info({ event: 'verdict_rules_file_reloaded', file: config.verdict_rules_file }, 'verdict_rules_file reloaded');
  const ruled =
    model.task === 'classify' ? { verdict: outcome.verdict, reasons: [] } : judge(model, outcome.detections, { file: config.verdict_rules_file, line, camera });
  // The shadow run above compares the model's own verdicts; rules and gate apply to the answer only.
  const verdict = gatedVerdict(ruled.verdict, quality?.reasons ?? []);
  const result: DetectionResult = {
    request_id: requestId,
    line,
    camera,
    model: { name: model.name, version: model.version },
    ...outcome,
    verdict,
    ...(quality ? { quality } : {}),
    ...(ruled.reasons.length ? { verdict_reasons: ruled.reasons } : {}),
  };

  let stored: boolean | undefined;
  if (path.storeFirst) {
    stored = await store.save({ ...result, source });
  } else if (config.store_sync_results) {
    store.save({ ...result, source }).catch((err: Error) => {
      metrics.rejected.inc({ reason: 'store_write_failed' });
      logger.error({ event: 'result_store_failed', err }, 'could not store the result');
    });
  }
  const at = Date.now();
  for (const observer of deps.observers ?? []) observer.onInspected({ source, result, image: inspection.image, at });
  metrics.verdicts.inc({ line, verdict });
  for (const reason of quality?.reasons ?? []) metrics.qualityOutside.inc({ line, reason: reason.slice(0, reason.indexOf(':')) });
  for (const d of outcome.detections) metrics.detections.inc({ line, label: d.label });
  // Published even when the caller has gone (a closed stream): the result is real for every subscriber.
  if (stored !== false) events.publish(resultEvent(source, result));

  const duration = path.logDuration ? { duration_ms: outcome.timings_ms.total } : {};
  if (source === 'job') {
    logger.info(
      {
        event: 'job_done',
        line,
        camera,
        ...inspection.logFields,
        model: model.name,
        version: model.version,
        verdict,
        ...(quality?.reasons.length ? { quality_reasons: quality.reasons } : {}),
        ...(ruled.reasons.length ? { verdict_rules: ruled.reasons.map((r) => r.rule) } : {}),
        duplicate: !stored,
        ...duration,
      },
      'job done',
    );
  } else {
    logger.info(
      {
        event: 'detection_result',
        ...inspection.logFields,
        line,
        camera,
        model: model.name,
        version: model.version,
        verdict,
        ...(quality?.reasons.length ? { quality_reasons: quality.reasons } : {}),
        ...(ruled.reasons.length ? { verdict_rules: ruled.reasons.map((r) => r.rule) } : {}),
        detections: outcome.detections.length,
        labels: outcome.detections.map((d) => d.label),
        ...duration,
      },
      'detection result',
    );
  }
  return { result, stored };
}
