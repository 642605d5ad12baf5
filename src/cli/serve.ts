import { createServer } from 'node:net';
import { logHeapGrowth } from './heap-growth.js';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from '../server/app.js';
import { httpDrainOf } from '../server/drain.js';
import { createLogger } from '../logger.js';
import { configHelp, describePaths, parseCommandOrExit, resolvePaths } from './config-args.js';

const HELP = `Usage: sightline serve [options]

Serves the HTTP API with every model of the model repository.

Options:
${configHelp()}

Precedence: defaults < config file < SIGHTLINE_* environment < flags.
`;

const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'address already in use (is another Sightline running? set --port or SIGHTLINE_PORT)',
  EACCES: 'permission denied (ports below 1024 need privileges: set --port or SIGHTLINE_PORT)',
  EADDRNOTAVAIL: 'address not available on this machine (set --host or SIGHTLINE_HOST)',
};

/** The one line a listen failure gets: what could not be done, why, and what to change. */
export function listenFailure(host: string, port: number, err: NodeJS.ErrnoException): string {
  const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return `sightline: cannot listen on ${where}: ${(err.code && LISTEN_ERRORS[err.code]) ?? err.message}`;
}

/**
 * Binds host:port and lets it go again: a port that is taken ends the start here, before
 * any model loads or any job worker takes a job (the app's own listen still reports the
 * rare port taken in between).
 */
function probePort(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  if (port === 0) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}

/** shutdown_drain_ms for idle keep-alive connections to carry one last request or be closed by their clients, within a quarter of shutdown_timeout_ms. */
export function drainGraceMs(config: { shutdown_drain_ms: number; shutdown_timeout_ms: number }): number {
  return Math.min(config.shutdown_drain_ms, Math.floor(config.shutdown_timeout_ms / 4));
}

/**
 * Before the app closes: no new connections (refused, so a load balancer retries
 * elsewhere without doubt), `Connection: close` on every answer, and a short grace
 * for idle keep-alive sockets, so that none is cut under a request the client is
 * sending on it (src/server/drain.ts).
 */
async function drainConnections(app: FastifyInstance, graceMs: number, logger: Logger): Promise<void> {
  const drain = httpDrainOf(app);
  if (!drain) return;
  const started = performance.now();
  const { idleLeft } = await drain.drain(graceMs);
  logger.info(
    { event: 'server_drained', duration_ms: Math.round(performance.now() - started), idle_connections_cut: idleLeft },
    `no new connections; ${idleLeft} idle connection(s) left to close`,
  );
}

export async function runServe(argv: string[]): Promise<number> {
  const parsed = parseCommandOrExit('serve', HELP, argv);
  if (typeof parsed === 'number') return parsed;
  const paths = resolvePaths(parsed);
  const { config } = paths;
  const taken = await probePort(config.host, config.port);
  if (taken) {
    process.stderr.write(`${listenFailure(config.host, config.port, taken)}\n`);
    return 1;
  }
  const logger = createLogger(config.log_level, undefined, config.log_format);
  logger.info({ event: 'paths', models_dir: paths.modelsDir, data_dir: paths.dataDir, built_in_models: paths.builtInModels }, describePaths(paths));
  logHeapGrowth(logger, config.heap_growing_percent);
  const app = await buildApp(config, { logger });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    // The worker may have started: app.close() stops it (jobs in hand go back to the queue).
    await app.close().catch(() => undefined);
    process.stderr.write(`${listenFailure(config.host, config.port, err as NodeJS.ErrnoException)}\n`);
    return 1;
  }
  logger.info(
    { event: 'server_listening', address: app.addresses() },
    `listening on ${config.host}:${app.server.address() && (app.server.address() as { port: number }).port}`,
  );

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
      drainConnections(app, drainGraceMs(config), logger)
        .then(() => app.close())
        .then(
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
