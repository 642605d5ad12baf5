import type { Channel, ChannelModel, ConsumeMessage, Message, Options } from 'amqplib';
import { asError, isUnrecoverable } from '../errors.js';
import { HeldJobs, runHandler, type Outcome } from '../held-jobs.js';
import type { Consumer, DeadReason, Job, JobHandler, JobInfo, StopOptions } from '../job-queue.js';
import { retryDelayMs, type ResolvedQueueOptions } from '../options.js';
import type { JobStatePatch } from '../state/job-state-store.js';
import { decodeJob, deadHeaders, EXPIRED_MESSAGE, messageId, republishOptions, retryHeaders } from './message.js';
import type { Topology } from './topology.js';

/** What a consumer needs from its queue. */
export interface AmqpConsumerHost {
  readonly topology: Topology;
  readonly options: ResolvedQueueOptions;
  /** The open broker connection, if any. */
  current(): ChannelModel | undefined;
  /** Publishes with a broker confirm (throws QUEUE_UNAVAILABLE/QUEUE_FULL). */
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void>;
  /** Best-effort state bookkeeping; never throws. */
  record(id: string, patch: JobStatePatch): Promise<void>;
  /** The recorded state of a job, if the state store answers. */
  lookup(id: string): Promise<JobInfo | undefined>;
  completed(id: string): void;
  retrying(id: string, attempt: number, delayMs: number, err: Error): void;
  dead(id: string, reason: DeadReason, message: string): void;
  reportError(err: unknown): void;
  removeConsumer(consumer: AmqpConsumer): void;
}

const LOST_ATTEMPT = 'the worker running this attempt stopped without finishing it (crashed or lost its connection)';

interface Delivery {
  ch: Channel;
  msg: ConsumeMessage;
}

const RESUBSCRIBE_DELAY_MS = 1000;

/**
 * Consumes the jobs and retry queues on a channel of its own, with a
 * channel-wide prefetch equal to its concurrency, so the broker never hands it
 * more jobs than it runs. Each job is settled on the channel it came on: ack on
 * success; on failure the message is first republished (to a delay queue, or
 * to the dead-letter exchange) with a confirm, and only then acked, so a crash
 * in between duplicates a retry but never loses one.
 */
export class AmqpConsumer implements Consumer {
  private readonly held = new HeldJobs<Delivery>();
  private channel: Channel | undefined;
  private model: ChannelModel | undefined;
  private tags: string[] = [];
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private seq = 0;

  constructor(
    private readonly host: AmqpConsumerHost,
    private readonly handler: JobHandler,
    private readonly concurrency: number,
  ) {}

  get inHand(): number {
    return this.held.size;
  }

  /** Subscribes on a (new) connection; called at consume() and after every reconnect. */
  async subscribe(model: ChannelModel): Promise<void> {
    if (this.stopping || this.model === model) return;
    this.model = model;
    let ch: Channel | undefined;
    try {
      ch = await model.createChannel();
      this.channel = ch;
      this.tags = [];
      const own = ch;
      ch.on('error', (err: Error) => this.host.reportError(err));
      ch.on('close', () => this.onChannelClosed(own, model));
      await ch.prefetch(this.concurrency, true); // true = per channel: one budget across both queues
      const t = this.host.topology;
      for (const queue of [t.jobs, t.retry]) {
        const { consumerTag } = await ch.consume(queue, (msg) => this.onMessage(own, msg), { noAck: false });
        this.tags.push(consumerTag);
      }
    } catch (err) {
      if (this.model === model && this.channel === ch) {
        this.model = undefined;
        this.channel = undefined;
      }
      await ch?.close().catch(() => {});
      throw err;
    }
    if (this.stopping) await ch.close().catch(() => {}); // stop() ran while we subscribed
  }

  private onChannelClosed(ch: Channel, model: ChannelModel): void {
    if (this.channel !== ch) return;
    this.channel = undefined;
    this.model = undefined;
    // The connection is gone: the queue resubscribes us on `open`. A channel error on a live connection
    // (e.g. a queue deleted under us) needs a new channel on that same connection.
    setTimeout(() => {
      if (!this.stopping && this.model === undefined && this.host.current() === model) {
        this.subscribe(model).catch((err) => this.host.reportError(err));
      }
    }, RESUBSCRIBE_DELAY_MS).unref();
  }

  private onMessage(ch: Channel, msg: ConsumeMessage | null): void {
    if (msg === null) {
      this.host.reportError(new Error('the broker cancelled the consumer (queue deleted?)'));
      return;
    }
    if (this.stopping) {
      nack(ch, msg); // arrived after cancel: straight back for another consumer
      return;
    }
    let job: Job;
    try {
      job = decodeJob(msg);
    } catch (err) {
      void this.bury({ ch, msg }, undefined, 0, 'failed', asError(err).message);
      return;
    }
    if (job.deadline !== null && job.deadline <= Date.now()) {
      // Per-message TTL only fires at the head of the queue; this catches the rest (and retries, which carry no TTL).
      void this.bury({ ch, msg }, job, job.attempt - 1, 'expired', EXPIRED_MESSAGE);
      return;
    }
    this.held.track(String(++this.seq), job, { ch, msg }, async (held) => {
      // A redelivery of an attempt that was recorded running and never settled means
      // the worker holding it died (or lost its connection): that attempt counts, as a
      // lease expiry does on SQLite, so a job that kills its worker cannot loop forever.
      if (msg.fields.redelivered) {
        const before = await this.host.lookup(job.id);
        if (before?.state === 'running' && before.attempts === job.attempt) {
          await this.settle(job, held.ref, { ok: false, err: new Error(LOST_ATTEMPT) });
          return;
        }
      }
      await this.host.record(job.id, { state: 'running', attempts: job.attempt, updatedAt: Date.now() });
      const outcome = await runHandler(this.handler, job, held.controller.signal);
      if (held.returned) return;
      await this.settle(job, held.ref, outcome);
    });
  }

  private async settle(job: Job, d: Delivery, outcome: Outcome): Promise<void> {
    if (outcome.ok) {
      ack(d);
      await this.host.record(job.id, { state: 'done', updatedAt: Date.now() });
      this.host.completed(job.id);
      return;
    }
    const message = outcome.err.message;
    if (isUnrecoverable(outcome.err) || job.attempt >= this.host.options.maxAttempts) {
      await this.bury(d, job, job.attempt, 'failed', message);
      return;
    }
    const t = this.host.topology;
    const delay = retryDelayMs(this.host.options, job.attempt);
    const target = t.wait.get(delay) ?? t.retry;
    // Recorded before the publish: once published, the retry may start (and record `running`) at any moment.
    await this.host.record(job.id, { state: 'queued', attempts: job.attempt, lastError: message, updatedAt: Date.now() });
    try {
      await this.host.publish('', target, d.msg.content, republishOptions(d.msg, retryHeaders(job.attempt, message)));
    } catch (err) {
      this.host.reportError(err);
      nack(d.ch, d.msg); // broker trouble: let the broker hand it out again (it records `running` then)
      return;
    }
    ack(d);
    this.host.retrying(job.id, job.attempt, delay, outcome.err);
  }

  /** Dead-letters a delivery with its reason and error, then acks it. */
  private async bury(d: Delivery, job: Job | undefined, attemptsDone: number, reason: DeadReason, message: string): Promise<void> {
    const now = Date.now();
    try {
      await this.host.publish(
        this.host.topology.deadExchange,
        d.msg.fields.routingKey,
        d.msg.content,
        republishOptions(d.msg, deadHeaders(attemptsDone, reason, message, now)),
      );
    } catch (err) {
      this.host.reportError(err);
      nack(d.ch, d.msg);
      return;
    }
    ack(d);
    const id = job?.id ?? messageId(d.msg);
    if (id) await this.host.record(id, { state: 'dead', deadReason: reason, lastError: message, attempts: attemptsDone, updatedAt: now });
    this.host.dead(id, reason, message);
  }

  stop(options: StopOptions = {}): Promise<void> {
    this.stopped ??= this.halt(options.graceMs, true);
    return this.stopped;
  }

  /** Stops without settling anything; the caller drops the connection, so the broker redelivers. */
  kill(): Promise<void> {
    this.stopped ??= this.halt(0, false);
    return this.stopped;
  }

  private async halt(graceMs: number | undefined, giveBack: boolean): Promise<void> {
    this.stopping = true;
    const ch = this.channel;
    if (giveBack && ch) for (const tag of this.tags) await ch.cancel(tag).catch(() => {});
    await this.held.drain(graceMs, async (held) => {
      if (!giveBack) return;
      // Given back on purpose: the attempt does not count when it is redelivered.
      await this.host.record(held.job.id, { state: 'queued', updatedAt: Date.now() });
      nack(held.ref.ch, held.ref.msg);
    });
    if (giveBack && ch) await ch.close().catch(() => {});
    this.host.removeConsumer(this);
  }
}

/** Acks on the delivery's channel; if that channel died the broker has requeued the message already. */
function ack(d: Delivery): void {
  try {
    d.ch.ack(d.msg);
  } catch {
    // channel closed: the message goes to another consumer (at-least-once)
  }
}

function nack(ch: Channel, msg: Message): void {
  try {
    ch.nack(msg, false, true);
  } catch {
    // channel closed: requeued by the broker anyway
  }
}
