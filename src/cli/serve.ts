import { buildApp } from '../server/app.js';
import { createLogger } from '../log.js';
import { configHelp, parseCommandOrExit } from './config-args.js';

const HELP = `Usage: sightline serve [options]

Serves the HTTP API with every model of the model repository.

Options:
  --config <file>                   JSON config file [env SIGHTLINE_CONFIG]
${configHelp()}
  -h, --help                        show this help

Precedence: defaults < config file < SIGHTLINE_* environment < flags.
`;

export async function runServe(argv: string[]): Promise<number> {
  const parsed = parseCommandOrExit('serve', HELP, argv);
  if (typeof parsed === 'number') return parsed;
  const { config } = parsed;
  const logger = createLogger(config.log_level);
  const app = await buildApp(config, { logger });
  await app.listen({ host: config.host, port: config.port });
  logger.info({ event: 'server_listening', address: app.addresses() }, `listening on ${config.host}:${app.server.address() && (app.server.address() as { port: number }).port}`);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: 'server_stopping', signal }, `${signal}: no new requests, finishing those in flight`);
      const timer = setTimeout(() => {
        logger.error({ event: 'server_stop_timeout', timeout_ms: config.shutdown_timeout_ms }, 'in-flight requests did not finish in time; exiting');
        resolve(1);
      }, config.shutdown_timeout_ms);
      timer.unref();
      app.close().then(
        () => {
          clearTimeout(timer);
          logger.info({ event: 'server_stopped' }, 'stopped');
          resolve(0);
        },
        (err: Error) => {
          clearTimeout(timer);
          logger.error({ event: 'server_stop_failed', err }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
