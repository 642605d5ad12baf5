import type { Channel, GetMessage } from 'amqplib';
import type { DeadJob } from '../job-queue.js';
import { decodeDead, messageId } from './message.js';

/**
 * A broker cannot list or pick messages by id, so the dead-letter queue is
 * browsed: basic.get without ack, then closing the channel puts every message
 * back in its original place. Fine for an admin view; O(n) in the queue length,
 * and messages being browsed are briefly invisible to other browsers.
 */
export async function browseDead(ch: Channel, queue: string, limit: number): Promise<DeadJob[]> {
  const out: DeadJob[] = [];
  while (out.length < limit) {
    const msg = await ch.get(queue, { noAck: false });
    if (msg === false) break;
    out.push(decodeDead(msg));
  }
  return out;
}

/**
 * Finds the dead message with this job id (scanning at most `maxScan`), hands it
 * to `revive` (which republishes it with a confirm) and acks it only then.
 * Every other message goes back when the caller closes the channel.
 */
export async function takeDead(
  ch: Channel,
  queue: string,
  id: string,
  maxScan: number,
  revive: (msg: GetMessage) => Promise<void>,
): Promise<GetMessage | undefined> {
  for (let i = 0; i < maxScan; i++) {
    const msg = await ch.get(queue, { noAck: false });
    if (msg === false) return undefined;
    if (messageId(msg) === id) {
      await revive(msg);
      ch.ack(msg);
      return msg;
    }
  }
  return undefined;
}
