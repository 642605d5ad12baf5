import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { BatchingOptions, RepositoryOptions } from './repository.js';
import { parseVersionPolicies } from '../config/version-policy.js';
import { layoutCores, loneRequestThreads, threadLayout } from './thread-layout.js';
import { setDecodeConcurrency } from './preprocess.js';
import { jpegDecoderStatus, setNativeJpegDecoder } from './jpeg-native.js';

/**
 * Repository settings from the validated config; the server and `sightline eval` share them.
 * `cpus` is what the process may use: the runtime passes the container's CPU quota
 * where it is lower than the host's CPUs (src/metrics/cgroup.ts, which this layer
 * may not import); left out, the host's.
 */
export function repositoryOptions(
  config: Config,
  logger: Logger,
  extra: Partial<Omit<RepositoryOptions, 'batching'>> & { batching?: Partial<BatchingOptions> } = {},
  cpus?: number,
): RepositoryOptions {
  const cores = layoutCores(cpus);
  const layout = threadLayout(config.instances, config.intra_op_threads, cores);
  const { batching, ...rest } = extra;
  // Process-wide, not per model: every model's images share one decoder and the cores.
  setDecodeConcurrency(config.decode_concurrency > 0 ? config.decode_concurrency : cores);
  setNativeJpegDecoder(config.native_jpeg_decoder);
  const decoder = jpegDecoderStatus();
  logger.info(
    { event: 'jpeg_decoder', ...decoder },
    decoder.reason
      ? `JPEGs are decoded by sharp: ${decoder.reason}`
      : `plain JPEGs at the model input's size${config.native_jpeg_decoder === 'scaled' ? ' or 2, 4 or 8 times it' : ''} are decoded by libjpeg-turbo (native), the rest by sharp`,
  );
  return {
    dir: config.models_dir,
    defaultModel: config.default_model,
    runner: {
      intraOpThreads: layout.intraOpThreads,
      interOpThreads: config.inter_op_threads,
      intraOpSpinning: config.intra_op_spinning,
      loneRequestThreads: loneRequestThreads(config.lone_request_threads, layout.intraOpThreads, cores),
      loneRequestSpinning: config.lone_request_spinning,
    },
    instances: layout.instances,
    warmupRuns: config.warmup_runs,
    stallMs: config.inference_stall_ms,
    versionPolicies: parseVersionPolicies(config.model_version_policy),
    drainTimeoutMs: config.model_drain_timeout_ms,
    logger,
    ...rest,
    batching: {
      maxBatch: config.max_batch_size,
      maxDelayMs: config.max_queue_delay_ms,
      maxQueue: config.max_queue,
      ...batching,
    },
  };
}
