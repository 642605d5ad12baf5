import type { Logger } from 'pino';
import type { CameraStateEvent, ResultEvent } from '../../protocol/events.js';
import type { CameraState, CameraStatus, LineList } from '../../protocol/lines.js';
import type { MqttConnection, Will } from './connection.js';
import type { ModeDeps, MqttMode } from './mode.js';
import { statusMessage } from './status.js';

/** The retained `<prefix>/<line>/<camera>/state` message. */
export interface CameraStateMessage {
  line: string;
  camera: string;
  state: CameraState;
  previous: CameraState | null;
  /** When the state was entered. */
  at: string;
  last_frame_at: string | null;
  /** From GET /v1/lines (null when the camera was not listed yet). */
  counters: Pick<CameraStatus, 'fps' | 'latency_p95_ms' | 'last_hour'> | null;
}

export function topics(prefix: string) {
  return {
    available: `${prefix}/available`,
    status: `${prefix}/status`,
    result: (line: string) => `${prefix}/${line}/result`,
    state: (line: string, camera: string) => `${prefix}/${line}/${camera}/state`,
  };
}

function countersOf(camera: CameraStatus | undefined): CameraStateMessage['counters'] {
  return camera ? { fps: camera.fps, latency_p95_ms: camera.latency_p95_ms, last_hour: camera.last_hour } : null;
}

function findCamera(lines: LineList['lines'], line: string, camera: string): CameraStatus | undefined {
  return lines.find((l) => l.line === line)?.cameras.find((c) => c.camera === camera);
}

/**
 * Plain JSON topics under `<prefix>/`: results (QoS and retain from the config),
 * retained camera states, a retained status summary and the availability topic
 * with its `offline` will.
 */
export class PlainMode implements MqttMode {
  readonly #conn: MqttConnection;
  readonly #deps: ModeDeps;
  readonly #logger: Logger;
  readonly #topics: ReturnType<typeof topics>;
  readonly #qos: 0 | 1 | 2;
  readonly #retain: boolean;
  /** The last camera event per `line/camera`, for `previous` when the states are republished. */
  readonly #lastEvents = new Map<string, CameraStateEvent>();
  /** Camera states go out one after another: a republish on connect and a change must not overtake each other. */
  #chain: Promise<void> = Promise.resolve();

  constructor(conn: MqttConnection, deps: ModeDeps & { prefix: string; qos: 0 | 1 | 2; retain: boolean; logger: Logger }) {
    this.#conn = conn;
    this.#deps = deps;
    this.#logger = deps.logger;
    this.#topics = topics(deps.prefix);
    this.#qos = deps.qos;
    this.#retain = deps.retain;
  }

  will(): Will {
    return { topic: this.#topics.available, payload: Buffer.from('offline'), qos: 1, retain: true };
  }

  async connected(): Promise<void> {
    this.#conn.publishQuietly(this.#topics.available, 'online', { qos: 1, retain: true });
    this.#queue(() => this.#republishStates());
    this.status();
  }

  result(payload: string): Promise<void> {
    const event = JSON.parse(payload) as ResultEvent;
    // The stored text goes out as it is: the payload is the result event, byte for byte.
    return this.#conn.publish(this.#topics.result(event.line), payload, { qos: this.#qos, retain: this.#retain });
  }

  camera(event: CameraStateEvent): void {
    this.#lastEvents.set(`${event.line}/${event.camera}`, event);
    if (!this.#conn.connected) return; // the next connect republishes every state
    this.#queue(async () => {
      const lines = await this.#deps.lines();
      const message: CameraStateMessage = {
        line: event.line,
        camera: event.camera,
        state: event.state,
        previous: event.previous,
        at: event.at,
        last_frame_at: event.last_frame_at,
        counters: countersOf(findCamera(lines, event.line, event.camera)),
      };
      this.#conn.publishQuietly(this.#topics.state(event.line, event.camera), JSON.stringify(message), { qos: 1, retain: true });
    });
  }

  message(): void {}

  status(): void {
    this.#queue(async () => {
      const [lines, figures] = await Promise.all([this.#deps.lines(), this.#deps.figures()]);
      const message = statusMessage(this.#deps, lines, figures);
      this.#conn.publishQuietly(this.#topics.status, JSON.stringify(message), { qos: 1, retain: true });
    });
  }

  async closing(): Promise<void> {
    await this.#chain;
    await this.#conn.publish(this.#topics.available, 'offline', { qos: 1, retain: true }).catch(() => undefined);
  }

  /** Every camera's current state, from GET /v1/lines, retained (a subscriber that comes later sees them all). */
  async #republishStates(): Promise<void> {
    const lines = await this.#deps.lines();
    for (const line of lines) {
      for (const camera of line.cameras) {
        const last = this.#lastEvents.get(`${line.line}/${camera.camera}`);
        const message: CameraStateMessage = {
          line: line.line,
          camera: camera.camera,
          state: camera.state,
          previous: last && last.state === camera.state ? last.previous : null,
          at: camera.since,
          last_frame_at: camera.last_frame_at,
          counters: countersOf(camera),
        };
        this.#conn.publishQuietly(this.#topics.state(line.line, camera.camera), JSON.stringify(message), { qos: 1, retain: true });
      }
    }
  }

  #queue(work: () => Promise<void>): void {
    this.#chain = this.#chain
      .then(work)
      .catch((err: unknown) => this.#logger.warn({ event: 'mqtt_state_failed', err }, 'MQTT output: could not publish a state'));
  }
}
