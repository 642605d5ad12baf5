/**
 * The /v1/stream WebSocket protocol, shared by the server and the client SDK.
 *
 * Client → server, binary: one image frame per WebSocket message, never base64.
 *
 *   offset 0  2 bytes  magic "SL" (0x53 0x4C)
 *   offset 2  1 byte   protocol version (1)
 *   offset 3  1 byte   reserved, 0
 *   offset 4  2 bytes  header length H, unsigned big-endian, 2 … MAX_HEADER_BYTES
 *   offset 6  H bytes  header: UTF-8 JSON object (FrameHeader)
 *   offset 6+H         the image bytes (JPEG, PNG or WebP)
 *
 * Client → server, text: JSON ClientMessage (subscribe, unsubscribe, ping).
 * Server → client, text only: JSON ServerMessage.
 */
import type { ErrorBody } from './errors.js';
import type { SightlineEvent } from './events.js';
import type { InferenceOptions } from './options.js';
import type { DetectionResult } from './results.js';

export const FRAME_MAGIC = 0x534c; // "SL"
export const PROTOCOL_VERSION = 1;
export const FRAME_PREFIX_BYTES = 6;
export const MAX_HEADER_BYTES = 4096;
export const FRAME_ID_PATTERN = '^[A-Za-z0-9._:-]{1,128}$';

/** Per-frame header; the options mean what the query of POST /v1/detect means. */
export interface FrameHeader extends InferenceOptions {
  /** Chosen by the client, echoed in the frame's result, error or drop notice. */
  id: string;
  /** Production line; default: the connection's `line` query parameter, else "default". */
  line?: string;
  /** Deadline from the frame's arrival; default request_timeout_ms. */
  timeout_ms?: number;
}

export type ClientMessage =
  | { type: 'subscribe'; lines: string[] }
  | { type: 'unsubscribe'; lines: string[] }
  /** Application-level ping for clients that cannot send WebSocket pings (browsers); answered with `pong`. */
  | { type: 'ping'; id?: string };

export interface StreamLimits {
  max_in_flight: number;
  max_pending: number;
  drop_policy: 'oldest' | 'newest';
  max_frame_bytes: number;
  max_subscriptions: number;
  ping_interval_ms: number;
  idle_timeout_ms: number;
  status_interval_ms: number;
}

export interface StreamStatus {
  type: 'status';
  at: string;
  /** Open /v1/stream connections on this server. */
  connections: number;
  /** Results per second produced by this server (all sources) over the last status interval. */
  throughput_fps: number;
  /** End-to-end latency of this server's results over the last status interval (null: none). */
  latency_ms: { p50: number | null; p99: number | null };
  /** Requests admitted to the inference queues and not yet running, all models. */
  queue_depth: number;
  /** This connection's counters. */
  connection: {
    received: number;
    processed: number;
    failed: number;
    dropped: number;
    in_flight: number;
    pending: number;
    /** Subscribed events not sent because this client was not reading fast enough (send buffer over its bound). */
    events_skipped?: number;
  };
}

export type ServerMessage =
  | { type: 'hello'; connection_id: string; protocol: number; limits: StreamLimits; subscriptions: string[] }
  | { type: 'result'; id: string; result: DetectionResult }
  | { type: 'error'; id?: string; error: ErrorBody }
  | { type: 'dropped'; id: string; reason: 'backpressure'; policy: 'oldest' | 'newest'; dropped_total: number }
  | { type: 'event'; event: SightlineEvent }
  | { type: 'subscriptions'; lines: string[] }
  | { type: 'pong'; id?: string }
  | StreamStatus;

/** Builds one binary frame. */
export function encodeFrame(header: FrameHeader, image: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  if (json.length > MAX_HEADER_BYTES) throw new RangeError(`frame header is ${json.length} bytes, more than ${MAX_HEADER_BYTES}`);
  const prefix = Buffer.alloc(FRAME_PREFIX_BYTES);
  prefix.writeUInt16BE(FRAME_MAGIC, 0);
  prefix.writeUInt8(PROTOCOL_VERSION, 2);
  prefix.writeUInt8(0, 3);
  prefix.writeUInt16BE(json.length, 4);
  return Buffer.concat([prefix, json, image]);
}

export class FrameFormatError extends Error {}

/**
 * Splits a binary frame into its parsed (not yet validated) header and image.
 * Throws FrameFormatError naming what is wrong; the server validates the header's fields.
 */
export function decodeFrame(data: Buffer): { header: unknown; image: Buffer } {
  if (data.length < FRAME_PREFIX_BYTES) throw new FrameFormatError(`frame of ${data.length} bytes is shorter than its ${FRAME_PREFIX_BYTES}-byte prefix`);
  if (data.readUInt16BE(0) !== FRAME_MAGIC) throw new FrameFormatError('frame does not start with the magic "SL"');
  const version = data.readUInt8(2);
  if (version !== PROTOCOL_VERSION) throw new FrameFormatError(`protocol version ${version} is not supported (this server speaks ${PROTOCOL_VERSION})`);
  const length = data.readUInt16BE(4);
  if (length < 2 || length > MAX_HEADER_BYTES) throw new FrameFormatError(`header length ${length} is outside 2…${MAX_HEADER_BYTES}`);
  if (data.length < FRAME_PREFIX_BYTES + length) throw new FrameFormatError(`frame ends inside its ${length}-byte header`);
  const text = new TextDecoder('utf-8', { fatal: true });
  let header: unknown;
  try {
    header = JSON.parse(text.decode(data.subarray(FRAME_PREFIX_BYTES, FRAME_PREFIX_BYTES + length)));
  } catch (err) {
    throw new FrameFormatError(`header is not UTF-8 JSON: ${(err as Error).message}`);
  }
  return { header, image: data.subarray(FRAME_PREFIX_BYTES + length) };
}

/** WebSocket close codes the server uses. */
export const CLOSE_CODES = {
  /** Idle timeout, or the server shutting down. */
  GOING_AWAY: 1001,
  /** The client does not read its messages (send buffer over HARD_BUFFERED_BYTES). */
  POLICY_VIOLATION: 1008,
  /** A message larger than the frame limit (sent by ws itself). */
  MESSAGE_TOO_BIG: 1009,
  /** Refused by the connection limits (accepted, then closed): try again later. */
  TRY_AGAIN_LATER: 1013,
  /** Closed from the admin API (DELETE /v1/admin/connections/:id). */
  CLOSED_BY_ADMIN: 4000,
  /** The session's credentials no longer hold: the API key was revoked or the JWT expired (reason says which). */
  CREDENTIALS_INVALID: 4001,
} as const;
