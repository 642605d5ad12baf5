import type { Logger } from 'pino';
import type { JobHandler } from '../queue/index.js';
import { inspect, type InspectionDeps } from '../inspection/inspect.js';
import type { MaskEncoding, TilingMode } from '../protocol/options.js';

/** What a job carries besides its image: the query of POST /v1/jobs. */
export interface JobOptions {
  /** Jobs enqueued before cameras existed have none: the default camera. */
  camera?: string;
  model?: string;
  conf?: number;
  iou?: number;
  max_det?: number;
  agnostic?: boolean;
  tiling?: TilingMode;
  /** Edge resize: the original image's size, to map boxes back. */
  source_width?: number;
  source_height?: number;
  /** Classification and segmentation models (docs/models.md#task-types). */
  top_k?: number;
  masks?: MaskEncoding;
}

export interface ProcessorDeps extends InspectionDeps {
  logger: Logger;
}

/**
 * Runs a job through the same inspection as /v1/detect and stores its result
 * under request_id = job id. Delivery is at least once; the store's idempotent
 * save makes a redelivered job a no-op rather than a duplicate (src/inspection).
 */
export function jobProcessor(deps: ProcessorDeps): JobHandler {
  return async (job) => {
    const options = job.options as JobOptions;
    // Job deadlines are wall-clock (they travel between machines); the batcher counts in performance time.
    const deadline = job.deadline === null ? undefined : performance.now() + (job.deadline - Date.now());
    await inspect(deps, {
      source: 'job',
      requestId: job.id,
      line: job.line,
      camera: options.camera,
      image: job.image,
      options: { ...options, priority: job.priority },
      deadline,
      logger: deps.logger.child({ job_id: job.id }),
      logFields: { attempt: job.attempt },
    });
  };
}
