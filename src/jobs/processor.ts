import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { ModelRepository } from '../inference/repository.js';
import type { ResultStore } from '../store/index.js';
import type { Metrics } from '../ops/metrics.js';
import type { JobHandler } from '../queue/index.js';
import { detect } from '../inference/detector.js';
import { resultEvent, type EventBus } from '../events/index.js';

/** What a job carries besides its image: the query of POST /v1/jobs. */
export interface JobOptions {
  model?: string;
  conf?: number;
  iou?: number;
  max_det?: number;
  agnostic?: boolean;
}

export interface ProcessorDeps {
  config: Config;
  models: ModelRepository;
  store: ResultStore;
  metrics: Metrics;
  logger: Logger;
  events: EventBus;
}

/**
 * Runs a job through the same pipeline as /v1/detect and stores its result
 * under request_id = job id. Delivery is at least once; the store's idempotent
 * save makes a redelivered job a no-op rather than a duplicate.
 */
export function jobProcessor({ config, models, store, metrics, logger, events }: ProcessorDeps): JobHandler {
  return async (job) => {
    const options = job.options as JobOptions;
    const model = models.findReady(options.model);
    // Job deadlines are wall-clock (they travel between machines); the batcher counts in performance time.
    const deadline = job.deadline === null ? undefined : performance.now() + (job.deadline - Date.now());
    const outcome = await detect(model, job.image, {
      conf: options.conf,
      iou: options.iou,
      maxDetections: options.max_det,
      agnostic: options.agnostic,
      maxPixels: config.max_image_pixels,
      priority: job.priority,
      deadline,
    });
    const result = { request_id: job.id, line: job.line, model: { name: model.name, version: model.version }, ...outcome };
    const stored = await store.save({ ...result, source: 'job' });
    // A redelivered job already announced its result.
    if (stored) events.publish(resultEvent('job', result));
    metrics.verdicts.inc({ line: job.line, verdict: outcome.verdict });
    for (const d of outcome.detections) metrics.detections.inc({ line: job.line, label: d.label });
    logger.info(
      { event: 'job_done', job_id: job.id, line: job.line, attempt: job.attempt, verdict: outcome.verdict, duplicate: !stored, duration_ms: outcome.timings_ms.total },
      'job done',
    );
  };
}
