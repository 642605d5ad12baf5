import type { OutputHealth } from '../output.js';
import { displayUrl } from './message.js';

/**
 * How each receiver answered its latest attempt. Kept per URL so that one
 * receiver that is down shows in /readyz however often the others answer.
 */
export class UrlHealth {
  readonly #failing = new Map<string, string>();
  #delivered = 0;

  constructor(private readonly urls: readonly string[]) {}

  /** True when `url` had been failing (it recovered). */
  succeeded(url: string): boolean {
    this.#delivered++;
    return this.#failing.delete(url);
  }

  /** True when `url` was not failing before (it started to). */
  failed(url: string, error: string): boolean {
    const started = !this.#failing.has(url);
    this.#failing.set(url, error);
    return started;
  }

  health(): OutputHealth {
    if (this.#failing.size === 0) {
      const to = `${this.urls.length} receiver(s): ${this.urls.map(displayUrl).join(', ')}`;
      return { connected: true, detail: this.#delivered > 0 ? `delivering to ${to}` : `no delivery yet, to ${to}` };
    }
    const failing = [...this.#failing].map(([url, error]) => `${displayUrl(url)}: ${error}`);
    return { connected: false, detail: `last delivery failed: ${failing.join('; ')}` };
  }
}
