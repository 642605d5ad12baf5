import { ALL_LINES, type EventHandler, type SightlineEvent } from './event-bus.js';

/**
 * Calls the handlers of the event's own line, then those of ALL_LINES, each once;
 * a handler that throws is reported and does not stop the others. Shared by every
 * back end so that delivery rules cannot drift between them.
 */
export function dispatchEvent(handlers: ReadonlyMap<string, ReadonlySet<EventHandler>>, event: SightlineEvent, onHandlerError: (err: unknown) => void): void {
  for (const key of event.line === ALL_LINES ? [ALL_LINES] : [event.line, ALL_LINES]) {
    const set = handlers.get(key);
    if (!set) continue;
    for (const handler of [...set]) {
      try {
        handler(event);
      } catch (err) {
        onHandlerError(err);
      }
    }
  }
}
