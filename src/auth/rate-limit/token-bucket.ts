/** What one take() decided. */
export interface Take {
  allowed: boolean;
  /** Whole tokens left after this request. */
  remaining: number;
  /** Until the bucket is full again (allowed) or holds one token (refused). */
  resetMs: number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was computed (ms). */
  at: number;
}

/**
 * Token buckets by key: each holds up to `burst` tokens and refills at
 * `ratePerSecond`; a request takes one. A client can send `burst` requests at
 * once and `ratePerSecond` sustained. Memory is bounded: a full bucket is the
 * same as no bucket, so full ones are forgotten first, then the least recently
 * used once `maxKeys` are held.
 */
export class TokenBuckets {
  readonly #buckets = new Map<string, Bucket>();

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    private readonly maxKeys = 10_000,
    private readonly now: () => number = Date.now,
  ) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) throw new RangeError('a token bucket needs ratePerSecond > 0 and burst >= 1');
  }

  get size(): number {
    return this.#buckets.size;
  }

  take(key: string): Take {
    const now = this.now();
    const bucket = this.#buckets.get(key);
    let tokens = bucket ? Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.ratePerSecond) : this.burst;
    const allowed = tokens >= 1;
    if (allowed) tokens -= 1;
    // Re-inserted so that Map order is least recently used first.
    this.#buckets.delete(key);
    this.#buckets.set(key, { tokens, at: now });
    if (this.#buckets.size > this.maxKeys) this.#evict(now);
    const msPerToken = 1000 / this.ratePerSecond;
    return {
      allowed,
      remaining: Math.floor(tokens),
      resetMs: Math.ceil(allowed ? (this.burst - tokens) * msPerToken : (1 - tokens) * msPerToken),
    };
  }

  #evict(now: number): void {
    for (const [key, b] of this.#buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.ratePerSecond >= this.burst) this.#buckets.delete(key);
    }
    // Down to 90%, so that the sweep runs once per many new keys, not on every request.
    const target = Math.floor(this.maxKeys * 0.9);
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size <= target) break;
      this.#buckets.delete(key);
    }
  }
}
