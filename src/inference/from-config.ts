import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { BatchingOptions, RepositoryOptions } from './repository.js';
import { threadLayout } from './thread-layout.js';

/** Repository settings from the validated config; the server and `sightline eval` share them. */
export function repositoryOptions(
  config: Config,
  logger: Logger,
  extra: Partial<Omit<RepositoryOptions, 'batching'>> & { batching?: Partial<BatchingOptions> } = {},
): RepositoryOptions {
  const layout = threadLayout(config.instances, config.intra_op_threads);
  const { batching, ...rest } = extra;
  return {
    dir: config.models_dir,
    defaultModel: config.default_model,
    runner: { intraOpThreads: layout.intraOpThreads, interOpThreads: config.inter_op_threads },
    instances: layout.instances,
    warmupRuns: config.warmup_runs,
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
