import { connect } from 'amqplib';
import { allRetryDelays, resolveQueueOptions, type QueueOptions } from '../options.js';
import { deleteTopology, topology } from './topology.js';

/**
 * Deletes every exchange and queue of a prefix (with their messages), on a
 * connection of its own: for tests and uninstalls. The retry options must match
 * the queue's, since they name its delay queues.
 */
export async function deleteAmqpTopology(url: string, prefix: string, options: QueueOptions = {}): Promise<void> {
  const model = await connect(url);
  try {
    const ch = await model.createChannel();
    await deleteTopology(ch, topology(prefix, allRetryDelays(resolveQueueOptions(options))));
  } finally {
    await model.close().catch(() => {});
  }
}
