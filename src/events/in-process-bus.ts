import type { EventBus, EventHandler, SightlineEvent } from './event-bus.js';
import { dispatchEvent } from './dispatch.js';

/**
 * The embedded default: subscribers in this process only. Handlers run
 * synchronously in publish order; one that throws is isolated from the others.
 */
export class InProcessEventBus implements EventBus {
  private readonly handlers = new Map<string, Set<EventHandler>>();
  private closed = false;

  constructor(private readonly onHandlerError: (err: unknown) => void = () => undefined) {}

  readonly connected = true;

  publish(event: SightlineEvent): void {
    if (this.closed) return;
    dispatchEvent(this.handlers, event, this.onHandlerError);
  }

  async subscribe(line: string, handler: EventHandler): Promise<() => Promise<void>> {
    // A distinct wrapper per call, so the same handler subscribed twice unsubscribes once per call.
    const entry: EventHandler = (event) => handler(event);
    let set = this.handlers.get(line);
    if (!set) this.handlers.set(line, (set = new Set()));
    set.add(entry);
    return async () => {
      const current = this.handlers.get(line);
      current?.delete(entry);
      if (current?.size === 0) this.handlers.delete(line);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.handlers.clear();
  }
}
