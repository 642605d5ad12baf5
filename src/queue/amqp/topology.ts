import type { Channel } from 'amqplib';

/**
 * Names and declarations of everything the amqp back end uses. All names start
 * with one prefix so that deployments (and tests) can share a broker.
 *
 *   exchange <p>.jobs (topic) ──detect.#──> queue <p>.jobs   (priorities, max length, reject-publish)
 *   failed run ──> queue <p>.wait.<ms> (TTL ms, no consumers) ──dead-letter via ''──> queue <p>.retry
 *   dead / expired ──> exchange <p>.dead (fanout) ──> queue <p>.dead
 *
 * Retries come back through their own queue <p>.retry rather than <p>.jobs: a
 * message dead-lettered into a queue at its max length with reject-publish is
 * silently dropped, and a retry must never be lost because new work filled the
 * queue. Consumers read both queues.
 */
export interface Topology {
  exchange: string;
  jobs: string;
  retry: string;
  deadExchange: string;
  dead: string;
  /** One delay queue per distinct retry delay. */
  wait: Map<number, string>;
}

export const BINDING_KEY = 'detect.#';

/** AMQP priorities: higher is served first; classic queues support 0..x-max-priority. */
export const AMQP_PRIORITY = { high: 2, normal: 1, low: 0 } as const;
const MAX_PRIORITY = 2;

export function routingKey(line: string): string {
  return `detect.${line}`;
}

export function topology(prefix: string, delays: number[]): Topology {
  return {
    exchange: `${prefix}.jobs`,
    jobs: `${prefix}.jobs`,
    retry: `${prefix}.retry`,
    deadExchange: `${prefix}.dead`,
    dead: `${prefix}.dead`,
    wait: new Map(delays.filter((d) => d > 0).map((d) => [d, `${prefix}.wait.${d}`])),
  };
}

/**
 * Declares the topology (idempotent). Every instance sharing a prefix must use
 * the same maxLength: RabbitMQ refuses (406 PRECONDITION_FAILED) to redeclare a
 * queue with other arguments.
 */
export async function assertTopology(ch: Channel, t: Topology, maxLength: number): Promise<void> {
  await ch.assertExchange(t.exchange, 'topic', { durable: true });
  await ch.assertExchange(t.deadExchange, 'fanout', { durable: true });
  await ch.assertQueue(t.dead, { durable: true });
  await ch.bindQueue(t.dead, t.deadExchange, '');
  await ch.assertQueue(t.jobs, {
    durable: true,
    arguments: {
      'x-max-priority': MAX_PRIORITY,
      'x-max-length': maxLength,
      // A full queue NACKs the publish, so enqueue can answer QUEUE_FULL instead of the broker dropping the oldest job.
      'x-overflow': 'reject-publish',
      // Messages whose per-message TTL runs out are dead-lettered (x-death reason "expired").
      'x-dead-letter-exchange': t.deadExchange,
    },
  });
  await ch.bindQueue(t.jobs, t.exchange, BINDING_KEY);
  await ch.assertQueue(t.retry, { durable: true, arguments: { 'x-max-priority': MAX_PRIORITY, 'x-dead-letter-exchange': t.deadExchange } });
  for (const [delay, name] of t.wait) {
    await ch.assertQueue(name, {
      durable: true,
      arguments: {
        // A queue-wide TTL (not per-message) so that messages expire in order: each delay has its own queue.
        'x-message-ttl': delay,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': t.retry,
      },
    });
  }
}

/** Deletes everything assertTopology declared (tests, uninstall). */
export async function deleteTopology(ch: Channel, t: Topology): Promise<void> {
  for (const q of [t.jobs, t.retry, t.dead, ...t.wait.values()]) await ch.deleteQueue(q);
  await ch.deleteExchange(t.exchange);
  await ch.deleteExchange(t.deadExchange);
}
