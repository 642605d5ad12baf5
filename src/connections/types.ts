/**
 * The vocabulary of the connection registry: what an open client connection
 * looks like from the outside (GET /v1/admin/connections), how they are
 * counted, and why a new one can be refused. Back ends (the Fastify plugin, the
 * stream route) only talk to the registry through these types.
 */

export const TRANSPORTS = ['http', 'websocket'] as const;
export type Transport = (typeof TRANSPORTS)[number];

/**
 * What is at the other end: declared with `X-Client-Kind` (or `client_kind` on
 * the stream URL) when it is one of these, else inferred from the route and the
 * caller's role (ingest → camera, viewer → dashboard, admin or none →
 * api_script; /metrics, /livez, /readyz → system).
 */
export const CLIENT_KINDS = ['camera', 'dashboard', 'api_script', 'system'] as const;
export type ClientKind = (typeof CLIENT_KINDS)[number];

/** Which limit refused a connection (logged; the metric reason is always `connection_limit`). */
export type RefusalReason =
  | 'max_connections'
  | 'per_address'
  | 'per_key'
  | 'reserve_high'
  | 'max_websocket_connections'
  | 'max_probe_connections'
  | 'shutting_down';

/** One open connection as the admin API shows it. */
export interface ConnectionInfo {
  /** Short, URL-safe, unique in this process (`h…` for HTTP sockets, `w…` for WebSocket sessions). */
  id: string;
  transport: Transport;
  remote_address: string;
  remote_port: number | null;
  user_agent: string | null;
  /** API key name or JWT subject of the last authenticated request; null when none was. */
  key: string | null;
  client_kind: ClientKind;
  /** Last `line` named by a request (query or path) or stream frame; null when none was. */
  line: string | null;
  /** `high` when the connection was admitted with `priority=high` (or `X-Priority: high`) by a caller that may claim the reserve. */
  priority: 'high' | 'normal';
  /** Served from the probe allowance (max_probe_connections): one request, then closed; not counted against max_connections. */
  probe: boolean;
  opened_at: string;
  last_activity_at: string;
  /** Milliseconds since the last activity. */
  idle_ms: number;
  /** HTTP: requests received on the socket; WebSocket: messages received (frames and text). */
  requests: number;
  /** HTTP: requests being answered now; WebSocket: always 0 (see the session's status). */
  in_flight: number;
  /** Bytes read from and written to the socket (TLS: encrypted bytes). */
  bytes_in: number;
  bytes_out: number;
}

export interface ConnectionCounts {
  /** Open connections (HTTP sockets + WebSocket sessions, probe-allowance sockets included). */
  total: number;
  by_transport: Record<Transport, number>;
  by_client_kind: Record<ClientKind, number>;
  /** Sockets refused and waiting to be answered or closed; not in total. */
  refused: number;
}

export interface ConnectionFilter {
  transport?: Transport;
  client_kind?: ClientKind;
  key?: string;
  line?: string;
  /** A remote address, or `address:port`. */
  remote?: string;
}

/** Limits as configured (config keys max_connections, max_connections_per_key, …). */
export interface ConnectionLimits {
  maxConnections: number;
  /** 0: no per-key limit. */
  perKey: number;
  /** 0: no per-address limit. */
  perAddress: number;
  /** Share of maxConnections kept for priority=high (claimed only by credentials with the ingest or admin role). */
  reserveHigh: number;
  /** WebSocket sessions among maxConnections; 0: no limit of their own. */
  maxWebSockets: number;
  /** Probe and scrape connections (/livez, /readyz, /metrics) served beyond the other limits; 0: none. */
  maxProbes: number;
}

export interface Refusal {
  reason: RefusalReason;
  /** For the client (the TOO_MANY_CONNECTIONS message, the WebSocket close reason). */
  message: string;
}
