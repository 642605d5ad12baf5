import { createLogger } from '../logger.js';
import { startWorkerRuntime } from '../runtime.js';
import { configHelp, describePaths, parseCommandOrExit, resolvePaths } from './config-args.js';

/** Settings of the HTTP server: a worker opens no port, so its help leaves them out. */
const SERVE_ONLY = ['host', 'port', 'cors_origins'];

const HELP = `Usage: sightline worker [options]

Consumes jobs from the job queue (queue_url) and stores their results in the
result store (store_url), with every model of the model repository. Run as many
as the queue needs; on SIGTERM a worker stops taking jobs and finishes (or gives
back) those in hand.

Options:
${configHelp(SERVE_ONLY)}
`;

export async function runWorker(argv: string[]): Promise<number> {
  const parsed = parseCommandOrExit('worker', HELP, argv);
  if (typeof parsed === 'number') return parsed;
  const paths = resolvePaths(parsed);
  const { config } = paths;
  const logger = createLogger(config.log_level, undefined, config.log_format);
  logger.info({ event: 'paths', models_dir: paths.modelsDir, data_dir: paths.dataDir, built_in_models: paths.builtInModels }, describePaths(paths));
  const runtime = await startWorkerRuntime(config, { logger });

  return new Promise<number>((resolve) => {
    const stop = async (signal: string) => {
      logger.info({ event: 'worker_stopping', signal }, `${signal}: no new jobs, finishing those in hand`);
      try {
        await runtime.close();
        logger.info({ event: 'worker_stopped' }, 'stopped');
        resolve(0);
      } catch (err) {
        logger.error({ event: 'worker_stop_failed', err }, 'error while stopping');
        resolve(1);
      }
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });
}
