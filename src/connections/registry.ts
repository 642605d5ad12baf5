import { randomBytes } from 'node:crypto';
import type { Metrics } from '../metrics/metrics.js';
import { normalizeAddress } from './classify.js';
import {
  CLIENT_KINDS,
  TRANSPORTS,
  type ClientKind,
  type ConnectionCounts,
  type ConnectionFilter,
  type ConnectionInfo,
  type ConnectionLimits,
  type Refusal,
  type Transport,
} from './types.js';

/** The socket side the registry needs: a net.Socket or TLSSocket (WebSocket sessions may have none). */
export interface TrackedSocket {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
  bytesRead?: number;
  bytesWritten?: number;
  destroyed?: boolean;
  end(): unknown;
  destroy(): unknown;
  once(event: 'close', listener: () => void): unknown;
}

interface RegistryLogger {
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** How sure the registry is of a connection's client kind: a later request only overrides an equal or weaker source. */
const KIND_RANK = { none: 0, system: 1, role: 2, declared: 3 } as const;
export type KindSource = keyof typeof KIND_RANK;

/** WebSocket close code of a connection kicked from the admin API (application range). */
export const CLOSED_BY_ADMIN = 4000;
/** How long a kicked idle HTTP socket may take to finish its close before it is destroyed. */
const KICK_GRACE_MS = 1000;

/** One open connection; the registry's own record (ConnectionInfo is its public view). */
export interface ConnectionEntry {
  readonly id: string;
  /** Arrival order: a WebSocket session inherits the number of the socket that carried its upgrade. */
  readonly seq: number;
  readonly transport: Transport;
  readonly socket: TrackedSocket | undefined;
  readonly remoteAddress: string;
  readonly remotePort: number | null;
  userAgent: string | null;
  key: string | null;
  clientKind: ClientKind;
  kindSource: KindSource;
  line: string | null;
  priority: 'high' | 'normal';
  readonly openedAt: number;
  lastActivity: number;
  requests: number;
  inFlight: number;
  /**
   * Accepted while the open connections filled the normal share: its first
   * request decides (served when high priority or when room has freed since).
   */
  provisional: boolean;
  /** Its first request passed the reserve check. */
  admitted: boolean;
  /**
   * A provisional connection whose request claimed the reserve: it holds the
   * place while that request runs, and keeps it only if the answer is no 4xx
   * (settle()); a request the server refuses claims nothing.
   */
  claimPending: boolean;
  /** Served from the probe allowance: one request, then closed. */
  probe: boolean;
  /** Holds one of max_websocket_connections: a WebSocket session, or an HTTP socket whose upgrade was admitted. */
  wsSlot: boolean;
  /** Kicked from the admin API: the response in flight goes out with `Connection: close`. */
  kicked: boolean;
  removed: boolean;
  /** WebSocket sessions: closes the session (close handshake). */
  close?: (code: number, reason: string) => void;
}

interface RefusedSocket {
  refusal: Refusal;
  inFlight: number;
  /**
   * Refused at accept, not yet counted: its head may still show a probe that the
   * allowance serves. Counted when it closes unserved (answered 503, cut, evicted).
   */
  uncounted?: { transport: Transport; address: string };
}

export interface RegistryOptions {
  limits: ConnectionLimits;
  metrics: Pick<Metrics, 'connections' | 'rejected'>;
  logger?: RegistryLogger;
  now?: () => number;
}

/** What a request tells about its connection, for admit(). */
export interface RequestFacts {
  /**
   * API key name or JWT subject; null: identified without credentials (limited per
   * address only); undefined: not identified at all (public route), the connection keeps its key.
   */
  key: string | null | undefined;
  /** Asks for the high-priority reserve, and may claim it (see classify.ts mayClaimReserve). */
  high: boolean;
  kind: ClientKind;
  kindSource: KindSource;
  /** A WebSocket upgrade: checked against max_websocket_connections. */
  upgrade?: boolean;
  line?: string | undefined;
  userAgent?: string | undefined;
}

/**
 * Every open client connection of this process — HTTP sockets and WebSocket
 * sessions — with who is at the other end and what it does, and the limits on
 * them: max_connections in total (the last connection_reserve_high share only
 * for priority=high), WebSocket sessions among them (max_websocket_connections),
 * per remote address (known at accept) and per API key (known once a request
 * authenticates). Probes and scrapes (/livez, /readyz, /metrics) that those
 * limits would refuse get a small allowance of their own (max_probe_connections).
 * The single owner of the `sightline_connections{transport,client_kind}` gauge.
 *
 * A WebSocket session replaces the HTTP socket that carried its upgrade (one
 * connection, counted once). Refused sockets are kept apart (counts.refused)
 * until they are answered and closed: only their request head tells whether
 * they are probes.
 */
export class ConnectionRegistry {
  private readonly entries = new Map<string, ConnectionEntry>();
  private readonly bySocket = new WeakMap<TrackedSocket, ConnectionEntry>();
  private readonly refused = new Map<TrackedSocket, RefusedSocket>();
  private readonly perAddress = new Map<string, number>();
  private readonly perKey = new Map<string, number>();
  /** Sockets whose close already removes their entry. */
  private readonly watched = new WeakSet<TrackedSocket>();
  private probes = 0;
  private websockets = 0;
  private seq = 0;
  private readonly now: () => number;
  /** Set when the server closes: sockets with no request in flight are cut, new ones still tracked. */
  closing = false;

  constructor(private readonly options: RegistryOptions) {
    this.now = options.now ?? Date.now;
    for (const transport of TRANSPORTS) {
      for (const kind of CLIENT_KINDS) options.metrics.connections.set({ transport, client_kind: kind }, 0);
    }
  }

  get limits(): ConnectionLimits {
    return this.options.limits;
  }

  /** Connections kept for priority=high: the last floor(max × reserve). */
  get reserved(): number {
    const { maxConnections, reserveHigh } = this.options.limits;
    return Math.min(maxConnections - 1, Math.max(0, Math.floor(maxConnections * reserveHigh + 1e-9)));
  }

  /** Refused sockets waiting for their head to be answered 503; beyond, new refused ones are closed at once. */
  get maxPendingRefusals(): number {
    return Math.max(256, 4 * this.options.limits.maxConnections);
  }

  /** Open connections a normal-priority client may use. */
  get normalLimit(): number {
    return this.options.limits.maxConnections - this.reserved;
  }

  /** Every open connection, probe-allowance ones included. */
  get size(): number {
    return this.entries.size;
  }

  /** Open connections that count against max_connections (all but the probe allowance's). */
  get open(): number {
    return this.entries.size - this.probes;
  }

  /** WebSocket sessions open or being opened (upgrade admitted). */
  get webSockets(): number {
    return this.websockets;
  }

  // ------------------------------------------------------------------ HTTP sockets

  /**
   * A new TCP (or TLS) socket: registered, or refused when the server is at
   * max_connections or the address at its limit. A refused socket stays open
   * until its request head arrives (answered 503 and closed, or served from the
   * probe allowance when it is a probe) or headers_timeout_ms passes.
   */
  acceptSocket(socket: TrackedSocket): ConnectionEntry | Refusal {
    const { maxConnections, perAddress } = this.options.limits;
    const address = normalizeAddress(socket.remoteAddress);
    let refusal: Refusal | undefined;
    if (this.open >= maxConnections) {
      refusal = { reason: 'max_connections', message: `${maxConnections} connections are open (max_connections)` };
    } else if (perAddress > 0 && (this.perAddress.get(address) ?? 0) >= perAddress) {
      refusal = { reason: 'per_address', message: `${perAddress} connections are open from ${address} (max_connections_per_address)` };
    }
    if (refusal) {
      // A refused socket is kept until its head can be answered (or headers_timeout_ms cuts it);
      // a flood of sockets that send nothing must not pile up file descriptors meanwhile. The
      // oldest silent one makes room, not the newcomer: a probe that sends its head at once
      // still gets its answer while the flood goes on.
      if (this.refused.size >= this.maxPendingRefusals && !this.evictSilentRefusal()) {
        this.countRefusal(refusal, 'http', address);
        socket.destroy();
        return refusal;
      }
      this.trackRefused(socket, refusal, 'http', address, 0, false);
      return refusal;
    }
    const entry = this.add({
      transport: 'http',
      socket,
      remoteAddress: address,
      remotePort: socket.remotePort ?? null,
      provisional: this.open >= this.normalLimit,
    });
    this.watch(socket);
    return entry;
  }

  /**
   * Serves a probe (/livez, /readyz, /metrics) that the other limits refuse
   * — a refused socket whose head has just arrived, or a connection refused by
   * the reserve or the per-key limit — from the probe allowance: it leaves
   * max_connections' count and is closed after this one answer. A Refusal
   * when the allowance is full too (the caller answers 503 and closes).
   */
  admitProbe(socket: TrackedSocket): ConnectionEntry | Refusal {
    const { maxProbes } = this.options.limits;
    if (this.probes >= maxProbes) {
      return { reason: 'max_probe_connections', message: `${maxProbes} probe connections are open (max_probe_connections)` };
    }
    const refused = this.refused.get(socket);
    const previous = this.entryOf(socket);
    if (!refused && !previous) return { reason: 'max_connections', message: 'the connection is not open' };
    this.refused.delete(socket);
    if (previous) this.remove(previous);
    const entry = this.add({
      transport: 'http',
      socket,
      remoteAddress: previous?.remoteAddress ?? normalizeAddress(socket.remoteAddress),
      remotePort: previous?.remotePort ?? socket.remotePort ?? null,
      provisional: false,
      probe: true,
      ...(previous ? { seq: previous.seq } : {}),
    });
    entry.admitted = true;
    entry.requests = (previous?.requests ?? 0) + (refused ? refused.inFlight : 0);
    entry.inFlight = previous?.inFlight ?? refused?.inFlight ?? 0;
    entry.userAgent = previous?.userAgent ?? null;
    this.setKind(entry, 'system', 'system');
    this.watch(socket);
    return entry;
  }

  /** The registry's record of an HTTP socket (or of the WebSocket session it now carries). */
  entryOf(socket: TrackedSocket | undefined): ConnectionEntry | undefined {
    if (!socket) return undefined;
    const entry = this.bySocket.get(socket);
    return entry && !entry.removed ? entry : undefined;
  }

  /** Why a socket was refused, while it is open. */
  refusalOf(socket: TrackedSocket | undefined): Refusal | undefined {
    return socket ? this.refused.get(socket)?.refusal : undefined;
  }

  /** Whether a request on this socket has its head in and its response not yet finished. */
  busy(socket: TrackedSocket): boolean {
    const refused = this.refused.get(socket);
    if (refused) return refused.inFlight > 0;
    return (this.entryOf(socket)?.inFlight ?? 0) > 0;
  }

  /** An HTTP request arrived on a socket (its head is complete). */
  requestStarted(socket: TrackedSocket, userAgent: string | undefined): void {
    const refused = this.refused.get(socket);
    if (refused) {
      refused.inFlight++;
      return;
    }
    const entry = this.entryOf(socket);
    if (!entry) return;
    entry.requests++;
    entry.inFlight++;
    entry.lastActivity = this.now();
    if (userAgent !== undefined) entry.userAgent = userAgent.slice(0, 256);
  }

  /** Its response finished (or the socket went away). */
  requestFinished(socket: TrackedSocket): void {
    const refused = this.refused.get(socket);
    if (refused) {
      refused.inFlight = Math.max(0, refused.inFlight - 1);
      return;
    }
    const entry = this.bySocket.get(socket);
    if (entry?.transport !== 'http') return;
    entry.inFlight = Math.max(0, entry.inFlight - 1);
    entry.lastActivity = this.now();
  }

  /** An upgrade request (no 'request' event, no response of its own): counted, never in flight. */
  upgradeRequested(socket: TrackedSocket, userAgent: string | undefined): void {
    const entry = this.entryOf(socket);
    if (!entry) return;
    entry.requests++;
    entry.lastActivity = this.now();
    if (userAgent !== undefined) entry.userAgent = userAgent.slice(0, 256);
  }

  /**
   * What a request tells about its connection: key, client kind, line. Checks
   * the per-key limit when the key is new to the connection, the WebSocket
   * limit on an upgrade, and the reserve on the connection's first request.
   * Returns the refusal, else undefined (the caller answers it and then calls
   * refuse()).
   */
  admit(entry: ConnectionEntry, facts: RequestFacts): Refusal | undefined {
    if (entry.removed) return undefined;
    if (facts.userAgent !== undefined) entry.userAgent = facts.userAgent.slice(0, 256);
    if (facts.line) entry.line = facts.line;
    if (KIND_RANK[facts.kindSource] >= KIND_RANK[entry.kindSource]) this.setKind(entry, facts.kind, facts.kindSource);
    if (facts.key !== undefined && facts.key !== entry.key) {
      const { perKey } = this.options.limits;
      if (facts.key !== null && perKey > 0 && (this.perKey.get(facts.key) ?? 0) >= perKey) {
        return { reason: 'per_key', message: `${perKey} connections are open for key ${facts.key} (max_connections_per_key)` };
      }
      this.setKey(entry, facts.key);
    }
    if (facts.upgrade && !entry.wsSlot) {
      const { maxWebSockets } = this.options.limits;
      if (maxWebSockets > 0 && this.websockets >= maxWebSockets) {
        return { reason: 'max_websocket_connections', message: `${maxWebSockets} WebSocket sessions are open (max_websocket_connections)` };
      }
      this.takeWebSocketSlot(entry);
    }
    if (!entry.admitted) {
      if (entry.provisional && this.openBefore(entry) >= this.normalLimit) {
        if (!facts.high) {
          const { maxConnections } = this.options.limits;
          return {
            reason: 'reserve_high',
            message: `${this.normalLimit} of ${maxConnections} connections are open; the other ${this.reserved} are kept for priority=high requests from API keys or JWTs with the ingest or admin role (connection_reserve_high)`,
          };
        }
        entry.claimPending = true;
        entry.priority = 'high';
        return undefined;
      }
      entry.admitted = true;
      entry.claimPending = false;
      entry.priority = facts.high ? 'high' : 'normal';
    }
    return undefined;
  }

  /**
   * A response on an HTTP connection is going out with this status. Returns
   * true when the connection must close after it: probe-allowance sockets
   * (one answer each), and connections in the reserve whose request did not
   * earn their place — a claim answered 4xx, or a request answered before the
   * limits saw it (401, 403, 429) — so that no refused request keeps a
   * reserved place. An upgrade answered over HTTP gives its WebSocket place back.
   */
  settle(entry: ConnectionEntry, status: number): boolean {
    if (entry.removed) return false;
    if (entry.transport === 'http' && entry.wsSlot) this.releaseWebSocketSlot(entry);
    if (entry.probe) return true;
    if (entry.admitted || !entry.provisional) return false;
    if (entry.claimPending && (status < 400 || status >= 500)) {
      entry.admitted = true;
      entry.claimPending = false;
      return false;
    }
    entry.claimPending = false;
    entry.priority = 'normal';
    return true;
  }

  /** Takes a connection out of the counts: it is answered (503 or close 1013) and closed by the caller. */
  refuse(entry: ConnectionEntry, refusal: Refusal): void {
    if (entry.removed) return;
    this.remove(entry);
    if (entry.socket && !entry.socket.destroyed) this.trackRefused(entry.socket, refusal, entry.transport, entry.remoteAddress, entry.inFlight);
    else this.countRefusal(refusal, entry.transport, entry.remoteAddress);
  }

  /** A line named by a request or frame on this connection. */
  noteLine(entry: ConnectionEntry, line: string | undefined): void {
    if (line && !entry.removed) entry.line = line;
  }

  // ------------------------------------------------------------------ WebSocket sessions

  /**
   * A WebSocket session on `socket`; it takes the place of the socket's HTTP
   * entry (same arrival number, same slot) so the connection is counted once.
   */
  openWebSocket(
    socket: TrackedSocket | undefined,
    info: {
      remoteAddress: string;
      remotePort?: number | undefined;
      userAgent?: string | undefined;
      key: string | null;
      clientKind: ClientKind;
      line?: string | undefined;
      high: boolean;
      close: (code: number, reason: string) => void;
    },
  ): ConnectionEntry {
    const carrier = this.entryOf(socket);
    const seq = carrier?.seq;
    if (carrier) this.remove(carrier);
    const entry = this.add({
      transport: 'websocket',
      socket,
      remoteAddress: carrier?.remoteAddress ?? normalizeAddress(info.remoteAddress),
      remotePort: carrier?.remotePort ?? info.remotePort ?? null,
      provisional: false,
      ...(seq !== undefined ? { seq } : {}),
    });
    this.takeWebSocketSlot(entry);
    entry.admitted = true;
    entry.priority = carrier ? carrier.priority : info.high ? 'high' : 'normal';
    entry.userAgent = info.userAgent?.slice(0, 256) ?? carrier?.userAgent ?? null;
    entry.line = info.line ?? carrier?.line ?? null;
    entry.close = info.close;
    this.setKind(entry, info.clientKind, 'declared');
    this.setKey(entry, info.key);
    // The TCP socket closing ends the session's entry too (remove() is idempotent).
    if (socket && !carrier) this.watch(socket);
    return entry;
  }

  /** A message (frame or text) arrived on a WebSocket session. */
  messageReceived(entry: ConnectionEntry): void {
    if (entry.removed) return;
    entry.requests++;
    entry.lastActivity = this.now();
  }

  /** Activity without a message (pong, ping). */
  touch(entry: ConnectionEntry): void {
    if (!entry.removed) entry.lastActivity = this.now();
  }

  // ------------------------------------------------------------------ both

  /** Takes a connection out of the registry (closed socket or session); idempotent. */
  remove(entry: ConnectionEntry): void {
    if (entry.removed) return;
    entry.removed = true;
    this.entries.delete(entry.id);
    if (entry.probe) this.probes--;
    this.releaseWebSocketSlot(entry);
    const key = entry.key;
    this.setKey(entry, null);
    entry.key = key;
    if (!entry.probe) {
      const left = (this.perAddress.get(entry.remoteAddress) ?? 1) - 1;
      if (left > 0) this.perAddress.set(entry.remoteAddress, left);
      else this.perAddress.delete(entry.remoteAddress);
    }
    this.countKind(entry.transport, entry.clientKind, -1);
    this.options.logger?.debug(
      {
        event: 'connection_close',
        connection_id: entry.id,
        transport: entry.transport,
        remote_address: entry.remoteAddress,
        client_kind: entry.clientKind,
        requests: entry.requests,
        duration_ms: this.now() - entry.openedAt,
      },
      'connection closed',
    );
  }

  get(id: string): ConnectionEntry | undefined {
    return this.entries.get(id);
  }

  /**
   * Closes a connection for the admin API. WebSocket: close code 4000 "closed by
   * admin". HTTP: an idle socket is ended (FIN; destroyed after 1 s if the peer
   * lingers), a busy one destroyed at once — except the admin's own, which
   * closes after this response. False for an unknown id.
   */
  kick(id: string, requester?: TrackedSocket): boolean {
    const entry = this.entries.get(id);
    if (!entry) return false;
    this.options.logger?.info(
      { event: 'connection_kicked', connection_id: id, transport: entry.transport, remote_address: entry.remoteAddress, key: entry.key },
      'connection closed by admin',
    );
    if (entry.transport === 'websocket') {
      if (entry.close) entry.close(CLOSED_BY_ADMIN, 'closed by admin');
      else entry.socket?.destroy();
      return true;
    }
    entry.kicked = true;
    const socket = entry.socket;
    if (!socket) return true;
    if (socket === requester) return true; // Connection: close on this very response
    if (entry.inFlight > 0) {
      socket.destroy();
    } else {
      socket.end();
      setTimeout(() => socket.destroy(), KICK_GRACE_MS).unref();
    }
    return true;
  }

  /**
   * Server shutdown: HTTP sockets with no request in flight (idle keep-alive,
   * half-sent heads, refused) are destroyed so that close() does not wait for
   * their timeouts; busy ones finish their response (it carries Connection: close).
   */
  sweep(): number {
    let cut = 0;
    for (const entry of [...this.entries.values()]) {
      if (entry.transport === 'http' && entry.inFlight === 0 && entry.socket) {
        entry.socket.destroy();
        cut++;
      }
    }
    for (const [socket, refused] of [...this.refused]) {
      if (refused.inFlight === 0) {
        socket.destroy();
        cut++;
      }
    }
    return cut;
  }

  /** Open connections, oldest first, filtered; `limit` caps the page (counts cover everything). */
  list(filter: ConnectionFilter = {}, limit = Infinity): { connections: ConnectionInfo[]; matched: number } {
    const matching: ConnectionEntry[] = [];
    for (const entry of this.entries.values()) if (matches(entry, filter)) matching.push(entry);
    matching.sort((a, b) => a.openedAt - b.openedAt || a.seq - b.seq);
    return { connections: matching.slice(0, limit).map((e) => this.info(e)), matched: matching.length };
  }

  counts(): ConnectionCounts {
    const by_transport = Object.fromEntries(TRANSPORTS.map((t) => [t, 0])) as Record<Transport, number>;
    const by_client_kind = Object.fromEntries(CLIENT_KINDS.map((k) => [k, 0])) as Record<ClientKind, number>;
    for (const entry of this.entries.values()) {
      by_transport[entry.transport]++;
      by_client_kind[entry.clientKind]++;
    }
    return { total: this.entries.size, by_transport, by_client_kind, refused: this.refused.size };
  }

  info(entry: ConnectionEntry): ConnectionInfo {
    const now = this.now();
    return {
      id: entry.id,
      transport: entry.transport,
      remote_address: entry.remoteAddress,
      remote_port: entry.remotePort,
      user_agent: entry.userAgent,
      key: entry.key,
      client_kind: entry.clientKind,
      line: entry.line,
      priority: entry.priority,
      probe: entry.probe,
      opened_at: new Date(entry.openedAt).toISOString(),
      last_activity_at: new Date(entry.lastActivity).toISOString(),
      idle_ms: Math.max(0, now - entry.lastActivity),
      requests: entry.requests,
      in_flight: entry.inFlight,
      bytes_in: entry.socket?.bytesRead ?? 0,
      bytes_out: entry.socket?.bytesWritten ?? 0,
    };
  }

  // ------------------------------------------------------------------ internals

  private add(init: {
    transport: Transport;
    socket: TrackedSocket | undefined;
    remoteAddress: string;
    remotePort: number | null;
    provisional: boolean;
    probe?: boolean;
    seq?: number;
  }): ConnectionEntry {
    const now = this.now();
    const entry: ConnectionEntry = {
      id: this.newId(init.transport),
      seq: init.seq ?? ++this.seq,
      transport: init.transport,
      socket: init.socket,
      remoteAddress: init.remoteAddress,
      remotePort: init.remotePort,
      userAgent: null,
      key: null,
      clientKind: 'api_script',
      kindSource: 'none',
      line: null,
      priority: 'normal',
      openedAt: now,
      lastActivity: now,
      requests: 0,
      inFlight: 0,
      provisional: init.provisional,
      admitted: false,
      claimPending: false,
      probe: init.probe ?? false,
      wsSlot: false,
      kicked: false,
      removed: false,
    };
    this.entries.set(entry.id, entry);
    if (entry.probe) this.probes++;
    if (init.socket) this.bySocket.set(init.socket, entry);
    // Probe-allowance sockets live for one answer and count against no other limit.
    if (!entry.probe) this.perAddress.set(entry.remoteAddress, (this.perAddress.get(entry.remoteAddress) ?? 0) + 1);
    this.countKind(entry.transport, entry.clientKind, 1);
    this.options.logger?.debug(
      {
        event: 'connection_open',
        connection_id: entry.id,
        transport: entry.transport,
        remote_address: entry.remoteAddress,
        provisional: entry.provisional || undefined,
      },
      'connection open',
    );
    return entry;
  }

  private newId(transport: Transport): string {
    const prefix = transport === 'http' ? 'h' : 'w';
    for (;;) {
      const id = prefix + randomBytes(6).toString('base64url');
      if (!this.entries.has(id)) return id;
    }
  }

  /** Connections still open (probe allowance aside) that arrived before this one. */
  private openBefore(entry: ConnectionEntry): number {
    let n = 0;
    for (const other of this.entries.values()) if (!other.probe && other.seq < entry.seq) n++;
    return n;
  }

  private takeWebSocketSlot(entry: ConnectionEntry): void {
    if (entry.wsSlot) return;
    entry.wsSlot = true;
    this.websockets++;
  }

  private releaseWebSocketSlot(entry: ConnectionEntry): void {
    if (!entry.wsSlot) return;
    entry.wsSlot = false;
    this.websockets--;
  }

  /** Closes the oldest refused socket that has sent no request head; false when every one has. */
  private evictSilentRefusal(): boolean {
    for (const [socket, refused] of this.refused) {
      if (refused.inFlight > 0) continue;
      this.dropRefused(socket, refused);
      socket.destroy();
      return true;
    }
    return false;
  }

  private setKind(entry: ConnectionEntry, kind: ClientKind, source: KindSource): void {
    entry.kindSource = source;
    if (entry.clientKind === kind) return;
    if (!entry.removed) {
      this.countKind(entry.transport, entry.clientKind, -1);
      this.countKind(entry.transport, kind, 1);
    }
    entry.clientKind = kind;
  }

  /** Moves the connection's per-key count; a removed entry keeps its key for display but counts nowhere. */
  private setKey(entry: ConnectionEntry, key: string | null): void {
    if (entry.key === key) return;
    if (entry.key !== null) {
      const left = (this.perKey.get(entry.key) ?? 1) - 1;
      if (left > 0) this.perKey.set(entry.key, left);
      else this.perKey.delete(entry.key);
    }
    if (key !== null) this.perKey.set(key, (this.perKey.get(key) ?? 0) + 1);
    entry.key = key;
  }

  /** The socket closing removes whatever entry it carries then (its HTTP entry, or the session that replaced it). */
  private watch(socket: TrackedSocket): void {
    if (this.watched.has(socket)) return;
    this.watched.add(socket);
    socket.once('close', () => {
      const entry = this.bySocket.get(socket);
      if (entry) this.remove(entry);
    });
  }

  private countKind(transport: Transport, kind: ClientKind, delta: 1 | -1): void {
    if (delta > 0) this.options.metrics.connections.inc({ transport, client_kind: kind });
    else this.options.metrics.connections.dec({ transport, client_kind: kind });
  }

  private trackRefused(socket: TrackedSocket, refusal: Refusal, transport: Transport, address: string, inFlight = 0, countNow = true): void {
    if (countNow) this.countRefusal(refusal, transport, address);
    if (this.refused.has(socket)) return;
    const record: RefusedSocket = { refusal, inFlight, ...(countNow ? {} : { uncounted: { transport, address } }) };
    this.refused.set(socket, record);
    socket.once('close', () => {
      if (this.refused.get(socket) === record) this.dropRefused(socket, record);
    });
  }

  /** A refused socket is gone (closed or evicted): a refusal made at accept counts now. */
  private dropRefused(socket: TrackedSocket, record: RefusedSocket): void {
    this.refused.delete(socket);
    if (record.uncounted) this.countRefusal(record.refusal, record.uncounted.transport, record.uncounted.address);
    record.uncounted = undefined;
  }

  private countRefusal(refusal: Refusal, transport: Transport, address: string): void {
    this.options.metrics.rejected.inc({ reason: 'connection_limit' });
    this.options.logger?.debug(
      { event: 'connection_refused', reason: refusal.reason, transport, remote_address: address },
      `connection refused: ${refusal.message}`,
    );
  }
}

function matches(entry: ConnectionEntry, f: ConnectionFilter): boolean {
  if (f.transport && entry.transport !== f.transport) return false;
  if (f.client_kind && entry.clientKind !== f.client_kind) return false;
  if (f.key !== undefined && entry.key !== f.key) return false;
  if (f.line !== undefined && entry.line !== f.line) return false;
  if (f.remote !== undefined) {
    const remote = normalizeAddress(f.remote);
    if (
      entry.remoteAddress !== remote &&
      `${entry.remoteAddress}:${entry.remotePort}` !== f.remote &&
      `[${entry.remoteAddress}]:${entry.remotePort}` !== f.remote
    )
      return false;
  }
  return true;
}
