import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/schema.js';
import { Errors } from '../errors.js';

type TimeoutKeys = 'connection_idle_timeout_ms' | 'headers_timeout_ms' | 'body_timeout_ms' | 'max_header_bytes';

/** How often Node checks headers_timeout_ms and body_timeout_ms (its default, 30 s, would let them bite late). */
export function checkingInterval(config: Pick<Config, 'headers_timeout_ms'>): number {
  return Math.max(50, Math.min(1000, Math.floor(config.headers_timeout_ms / 2)));
}

/**
 * The Node HTTP server settings behind the connection timeouts, as
 * properties of the server (they work for http and https servers alike and
 * are read per connection or per check; connectionsCheckingInterval is read
 * when the server starts listening).
 */
export function httpServerSettings(config: Pick<Config, TimeoutKeys>) {
  return {
    /**
     * Idle keep-alive sockets (no request since the last response) are closed after this
     * (Node adds 1 s so that clients, told `Keep-Alive: timeout=<s>`, close their side first).
     */
    keepAliveTimeout: config.connection_idle_timeout_ms,
    /** From a request's first byte to its complete head (a socket that sends nothing counts from its accept). */
    headersTimeout: Math.min(config.headers_timeout_ms, config.body_timeout_ms),
    /** From a request's first byte to its complete body. */
    requestTimeout: config.body_timeout_ms,
    maxHeaderSize: config.max_header_bytes,
    connectionsCheckingInterval: checkingInterval({ headers_timeout_ms: Math.min(config.headers_timeout_ms, config.body_timeout_ms) }),
  };
}

/**
 * Options for `Fastify({...})`: the timeouts and header limit, JSON answers to
 * clients that break them, and idle sockets closed when the app closes.
 * `connectionTimeout` stays 0: a socket waiting for a long inference is not idle.
 */
export function connectionServerOptions(config: Pick<Config, TimeoutKeys>) {
  const settings = httpServerSettings(config);
  return {
    connectionTimeout: 0,
    keepAliveTimeout: settings.keepAliveTimeout,
    requestTimeout: settings.requestTimeout,
    forceCloseConnections: 'idle' as const,
    http: settings,
    clientErrorHandler,
  };
}

/** Sets the same settings on a created server (e.g. an https one, which does not take Fastify's `http` options). */
export function applyServerSettings(server: object, config: Pick<Config, TimeoutKeys>): void {
  Object.assign(server, httpServerSettings(config));
}

const answered = new WeakSet<Socket>();
const CLOSE_GRACE_MS = 1000;
const lingering = new WeakSet<Socket>();

/**
 * For an answer given while the request body is still arriving (413 on a body
 * past the limit, 404 for a large upload): after Node's close on `Connection:
 * close`, the socket lingers. Node destroys the socket as soon as the answer is
 * flushed; the bytes the client is still sending then meet a closed socket,
 * and the reset that follows can discard the answer before the client reads it.
 * Lingering, the socket is half-closed (FIN after the answer), keeps reading
 * and dropping for CLOSE_GRACE_MS, and only then is destroyed.
 */
export function lingerOnClose(socket: Socket | null | undefined): void {
  if (!socket || lingering.has(socket)) return;
  lingering.add(socket);
  // Node's server calls destroySoon() once a `Connection: close` response is flushed.
  socket.destroySoon = function (this: Socket) {
    if (this.writable) this.end();
    setTimeout(() => this.destroy(), CLOSE_GRACE_MS).unref();
  };
}

/** What a clientError handler needs from the app (decorated by the connections plugin). */
export interface ClientErrorContext {
  /** True when the socket has a request whose head arrived (so a timeout is the body's). */
  bodyPending(socket: Socket): boolean;
  rejected(reason: 'request_timeout' | 'headers_too_large'): void;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  maxHeaderBytes: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    connectionErrors?: ClientErrorContext;
  }
}

/**
 * Node's HTTP parser errors and timeouts, answered as Sightline JSON errors
 * instead of Node's bare status lines: 408 REQUEST_TIMEOUT (headers_timeout_ms,
 * body_timeout_ms), 431 HEADERS_TOO_LARGE (max_header_bytes), 400
 * INVALID_REQUEST (malformed HTTP). The answer carries `Connection: close`; the
 * socket is ended, and destroyed if the peer lingers. When the broken bytes
 * follow complete requests on the same connection (pipelining), their answers
 * go out first, in order; the wait is bounded by body_timeout_ms.
 */
export function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || socket.destroyed) return;
  if (answered.has(socket)) return; // the parser reports every later chunk of a broken request again
  answered.add(socket);
  const ctx = this.connectionErrors;
  const inFlight = responseOn(socket);
  // The bytes that broke the parser follow a complete request (pipelined in the same
  // write): that request is being answered, and its answer goes out first.
  if (inFlight?.req?.complete) {
    afterResponses(socket, ctx?.bodyTimeoutMs ?? 60_000, () => answerClientError(this, err, socket));
    return;
  }
  answerClientError(this, err, socket);
}

/** The response that owns the socket now (pipelined ones queue behind it). */
function responseOn(socket: Socket): ServerResponse | null | undefined {
  return (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
}

/**
 * Calls `then` once the socket has no response in progress: the in-flight one
 * and any pipelined ones queued behind it have finished. A handler that takes
 * longer than `boundMs` does not hold the socket: it is cut.
 */
function afterResponses(socket: Socket, boundMs: number, then: () => void): void {
  const timer = setTimeout(() => socket.destroy(), boundMs);
  timer.unref();
  const check = () => {
    const pending = responseOn(socket);
    if (socket.destroyed) return clearTimeout(timer);
    if (!pending || pending.writableFinished) {
      clearTimeout(timer);
      return then();
    }
    let waiting = true;
    const next = () => {
      if (!waiting) return;
      waiting = false;
      // Node's own 'finish' listener (registered first) has handed the socket to the next queued response by now.
      process.nextTick(check);
    };
    pending.once('finish', next);
    pending.once('close', next);
  };
  check();
}

function answerClientError(app: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  const ctx = app.connectionErrors;
  // A response already on its way (to the request whose bytes broke the parser) cannot be replaced by another one: just cut.
  if (responseOn(socket)?.headersSent || !socket.writable) {
    socket.destroy();
    return;
  }
  let status: number;
  let error: Error & { code: string };
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    const body = ctx?.bodyPending(socket) ?? false;
    error = body
      ? new Errors.REQUEST_TIMEOUT(`the request body did not arrive within ${ctx?.bodyTimeoutMs ?? '?'} ms (body_timeout_ms)`)
      : new Errors.REQUEST_TIMEOUT(`the request headers did not arrive within ${ctx?.headersTimeoutMs ?? '?'} ms (headers_timeout_ms)`);
    ctx?.rejected('request_timeout');
  } else if (err.code === 'HPE_HEADER_OVERFLOW') {
    status = 431;
    error = new Errors.HEADERS_TOO_LARGE(ctx?.maxHeaderBytes ?? 'the');
    ctx?.rejected('headers_too_large');
  } else {
    status = 400;
    error = new Errors.INVALID_REQUEST(`malformed HTTP request (${err.code ?? err.message})`);
  }
  app.log.info(
    { event: 'client_error', status, error_code: error.code, parser_code: err.code, remote_address: socket.remoteAddress },
    `client error: ${error.message}`,
  );
  const body = JSON.stringify({ error: { code: error.code, message: error.message } });
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
  ];
  try {
    // end(), not write() + destroy(): unread request bytes would turn the close into a reset that can eat the answer.
    socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  } catch {
    socket.destroy();
    return;
  }
  setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
}
