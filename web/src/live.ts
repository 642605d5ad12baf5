import { reactive } from 'vue';
import { auth } from './auth';
import type { CameraEvent, JobEvent, ResultEvent, StatusMessage } from './types';

/**
 * The one live connection of the page: a WebSocket to `/v1/stream?lines=*`
 * (every line; `access_token` when a credential is set, as browsers cannot send
 * headers on a WebSocket).
 *
 * - Subscribers get batches: every message that arrived since the last animation
 *   frame, in order, once per frame (requestAnimationFrame; a 500 ms timer when the
 *   tab is hidden and frames do not run). At most MAX_QUEUED events wait; older
 *   ones are dropped (a resync follows), so memory stays bounded.
 * - `live.on('result' | 'camera' | 'job' | 'status', (batch) => …)` returns an
 *   unsubscribe function; call it in onUnmounted.
 * - `live.on('resync', () => …)`: the connection came back after a loss (or the
 *   credential changed, or events were dropped): re-read from the API what may
 *   have been missed.
 * - `liveState.connected` / `liveState.reconnecting`: App.vue shows the
 *   "disconnected — reconnecting" banner from them.
 * - Reconnects with exponential backoff and jitter (0.5 s doubling up to 8 s, each
 *   wait drawn in [½, 1] of it); a connection silent for 25 s (no status, no
 *   pong) is treated as lost. Close code 4001 (credentials revoked or expired)
 *   opens the login prompt instead.
 */
export interface LiveEvents {
  result: ResultEvent[];
  camera: CameraEvent[];
  job: JobEvent[];
  status: StatusMessage[];
  resync: [];
}
type Kind = keyof LiveEvents;
type Handler<K extends Kind> = (batch: LiveEvents[K]) => void;

export const liveState = reactive({
  connected: false,
  /** true once a connection failed or was lost, until the next one opens */
  reconnecting: false,
  /** when the next attempt is due (epoch ms), 0 while connected or connecting */
  nextAttemptAt: 0,
  attempts: 0,
  connectionId: '' as string,
  lastMessageAt: 0,
});

const MAX_QUEUED = 5000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 8000;
const SILENCE_MS = 25_000;
const PING_MS = 10_000;

const handlers: { [K in Kind]: Set<Handler<K>> } = {
  result: new Set(),
  camera: new Set(),
  job: new Set(),
  status: new Set(),
  resync: new Set(),
};

let queue: { kind: Exclude<Kind, 'resync'>; data: unknown }[] = [];
let resyncPending = false;
let scheduled = false;
let rafId = 0;
let timerId = 0;
let ws: WebSocket | null = null;
let retryTimer = 0;
let pingTimer = 0;
let everOpened = false;
let started = false;
let stopped = false;
let onlineListener: (() => void) | null = null;

function flush(): void {
  scheduled = false;
  cancelAnimationFrame(rafId);
  clearTimeout(timerId);
  const batch = queue;
  queue = [];
  const byKind: { [K in Exclude<Kind, 'resync'>]: LiveEvents[K] } = { result: [], camera: [], job: [], status: [] };
  for (const item of batch) (byKind[item.kind] as unknown[]).push(item.data);
  for (const kind of ['camera', 'result', 'job', 'status'] as const) {
    const list = byKind[kind];
    if (list.length === 0) continue;
    for (const fn of handlers[kind]) call(fn as Handler<typeof kind>, list);
  }
  if (resyncPending) {
    resyncPending = false;
    for (const fn of handlers.resync) call(fn, []);
  }
}

function call<K extends Kind>(fn: Handler<K>, batch: LiveEvents[K]): void {
  try {
    fn(batch);
  } catch (err) {
    console.error('[live] subscriber failed', err);
  }
}

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  rafId = requestAnimationFrame(flush);
  // Hidden tabs get no animation frames.
  timerId = window.setTimeout(flush, document.hidden ? 500 : 1000);
}

function push(kind: Exclude<Kind, 'resync'>, data: unknown): void {
  queue.push({ kind, data });
  if (queue.length > MAX_QUEUED) {
    queue.splice(0, queue.length - MAX_QUEUED);
    resyncPending = true;
  }
  schedule();
}

function streamUrl(): string {
  const url = new URL('v1/stream', document.baseURI);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('lines', '*');
  url.searchParams.set('client_kind', 'dashboard');
  if (auth.key.value) url.searchParams.set('access_token', auth.key.value);
  return url.toString();
}

function onMessage(ev: MessageEvent): void {
  liveState.lastMessageAt = Date.now();
  if (typeof ev.data !== 'string') return;
  let msg: { type?: string; event?: { type?: string }; connection_id?: string };
  try {
    msg = JSON.parse(ev.data);
  } catch {
    return;
  }
  switch (msg.type) {
    case 'event': {
      const kind = msg.event?.type;
      if (kind === 'result' || kind === 'camera' || kind === 'job') push(kind, msg.event);
      break;
    }
    case 'status':
      push('status', msg);
      break;
    case 'hello':
      liveState.connectionId = msg.connection_id ?? '';
      break;
    default:
      break;
  }
}

function connect(): void {
  clearTimeout(retryTimer);
  if (stopped) return;
  liveState.nextAttemptAt = 0;
  let socket: WebSocket;
  try {
    socket = new WebSocket(streamUrl());
  } catch {
    retry();
    return;
  }
  ws = socket;
  socket.onopen = () => {
    if (ws !== socket) return;
    const wasLost = everOpened;
    everOpened = true;
    liveState.connected = true;
    liveState.reconnecting = false;
    liveState.attempts = 0;
    liveState.lastMessageAt = Date.now();
    clearInterval(pingTimer);
    pingTimer = window.setInterval(() => {
      if (ws !== socket || socket.readyState !== WebSocket.OPEN) return;
      if (Date.now() - liveState.lastMessageAt > SILENCE_MS) {
        socket.close(4100, 'silent');
        lost(socket);
        return;
      }
      socket.send(JSON.stringify({ type: 'ping', id: String(Date.now()) }));
    }, PING_MS);
    if (wasLost) {
      resyncPending = true;
      schedule();
    }
  };
  socket.onmessage = (ev) => {
    if (ws === socket) onMessage(ev);
  };
  socket.onclose = (ev) => {
    if (ws !== socket) return;
    if (ev.code === 4001) {
      // The credential was revoked or expired: ask for a new one; auth.onChange reconnects.
      lost(socket, false);
      auth.requireLogin();
      return;
    }
    lost(socket);
  };
  socket.onerror = () => {
    // onclose follows
  };
}

function lost(socket: WebSocket, again = true): void {
  if (ws !== socket) return;
  ws = null;
  clearInterval(pingTimer);
  socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
  liveState.connected = false;
  liveState.connectionId = '';
  if (stopped) return;
  liveState.reconnecting = true;
  if (again) retry();
}

function retry(): void {
  clearTimeout(retryTimer);
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** liveState.attempts);
  const wait = ceiling / 2 + Math.random() * (ceiling / 2);
  liveState.attempts++;
  liveState.reconnecting = true;
  liveState.nextAttemptAt = Date.now() + wait;
  retryTimer = window.setTimeout(connect, wait);
}

/** Closes the current connection (if any) and opens a new one now. */
export function reconnectNow(): void {
  const socket = ws;
  if (socket) {
    lost(socket, false);
    socket.close(1000, 'reconnect');
  }
  liveState.attempts = 0;
  connect();
}

export const live = {
  on<K extends Kind>(kind: K, fn: Handler<K>): () => void {
    (handlers[kind] as Set<Handler<K>>).add(fn);
    return () => {
      (handlers[kind] as Set<Handler<K>>).delete(fn);
    };
  },
  /** Opens the connection (once; App.vue does it). */
  start(): void {
    if (started) return;
    started = true;
    stopped = false;
    connect();
    if (!onlineListener) {
      onlineListener = () => {
        if (started && !liveState.connected) reconnectNow();
      };
      window.addEventListener('online', onlineListener);
    }
  },
  get started(): boolean {
    return started;
  },
  /** Another credential: reconnect with it, and have the pages re-read (resync). */
  restart(): void {
    everOpened = true;
    if (!started) live.start();
    else reconnectNow();
  },
  stop(): void {
    stopped = true;
    started = false;
    clearTimeout(retryTimer);
    liveState.reconnecting = false;
    liveState.nextAttemptAt = 0;
    const socket = ws;
    if (socket) {
      lost(socket, false);
      socket.close(1000, 'bye');
    }
  },
};
