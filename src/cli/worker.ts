import { createServer } from 'node:net';
import { logHeapGrowth } from './heap-growth.js';
import { createLogger } from '../logger.js';
import { startWorkerRuntime } from '../runtime.js';
import { buildWorkerApp } from '../server/worker-app.js';
import { configHelp, describePaths, parseCommandOrExit, resolvePaths } from './config-args.js';

/** Settings of the API server: a worker's own port is worker_http_host:worker_http_port. */
const SERVE_ONLY = ['host', 'port', 'cors_origins'];

const HELP = `Usage: sightline worker [options]

Consumes jobs from the job queue (queue_url) and stores their results in the
result store (store_url), with every model of the model repository. Run as many
as the queue needs. It serves /livez, /readyz and /metrics on
worker_http_host:worker_http_port (default 0.0.0.0:9464; 0 picks a free port).
On SIGTERM a worker stops taking jobs (/readyz answers 503 "draining"), finishes
(or gives back) those in hand, and closes its port last.

Options:
${configHelp(SERVE_ONLY)}
`;

const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'address already in use (another worker on this host? set --worker-http-port or SIGHTLINE_WORKER_HTTP_PORT; 0 picks a free port)',
  EACCES: 'permission denied (ports below 1024 need privileges: set --worker-http-port or SIGHTLINE_WORKER_HTTP_PORT)',
  EADDRNOTAVAIL: 'address not available on this machine (set --worker-http-host or SIGHTLINE_WORKER_HTTP_HOST)',
};

/** The one line a listen failure gets: what could not be done, why, and what to change. */
function listenFailure(host: string, port: number, err: NodeJS.ErrnoException): string {
  const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return `sightline worker: cannot listen on ${where}: ${(err.code && LISTEN_ERRORS[err.code]) ?? err.message}`;
}

/**
 * Binds host:port and lets it go again, so a port that is taken ends the start
 * before any model loads or any job is taken (as `sightline serve` does).
 */
function probePort(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  if (port === 0) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}

export async function runWorker(argv: string[]): Promise<number> {
  const parsed = parseCommandOrExit('worker', HELP, argv);
  if (typeof parsed === 'number') return parsed;
  const paths = resolvePaths(parsed);
  const { config } = paths;
  const host = config.worker_http_host;
  const port = config.worker_http_port;
  const taken = await probePort(host, port);
  if (taken) {
    process.stderr.write(`${listenFailure(host, port, taken)}\n`);
    return 1;
  }
  const logger = createLogger(config.log_level, undefined, config.log_format);
  logger.info({ event: 'paths', models_dir: paths.modelsDir, data_dir: paths.dataDir, built_in_models: paths.builtInModels }, describePaths(paths));
  logHeapGrowth(logger, config.heap_growing_percent);
  const runtime = await startWorkerRuntime(config, { logger });
  let draining: string | undefined;
  const app = buildWorkerApp({ runtime, logger, draining: () => draining });
  try {
    await app.listen({ host, port });
  } catch (err) {
    // Jobs it may have taken already finish or go back to the queue.
    await runtime.close().catch(() => undefined);
    process.stderr.write(`${listenFailure(host, port, err as NodeJS.ErrnoException)}\n`);
    return 1;
  }
  const bound = (app.server.address() as { port: number } | null)?.port ?? port;
  logger.info({ event: 'worker_listening', address: app.addresses() }, `worker probes and metrics on ${host}:${bound}`);

  return new Promise<number>((resolve) => {
    const stop = async (signal: string) => {
      if (draining !== undefined) return;
      draining = `${signal}: no new jobs, finishing those in hand`;
      logger.info({ event: 'worker_stopping', signal }, draining);
      let code = 0;
      try {
        await runtime.close();
      } catch (err) {
        logger.error({ event: 'worker_stop_failed', err }, 'error while stopping');
        code = 1;
      }
      // Last, so probes see the drain (503) to its end and the final metrics can be scraped.
      await app.close().catch(() => undefined);
      if (code === 0) logger.info({ event: 'worker_stopped' }, 'stopped');
      resolve(code);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });
}
