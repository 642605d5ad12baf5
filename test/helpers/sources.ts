// Shared by the pulled-source tests (test/sources-*.test.ts).

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads until `ok` holds (every 50 ms), or fails naming what it waited for and the last value read. */
export async function until<T>(what: string, read: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await sleep(50);
  }
}

/** Settings under which a cut stream is seen, and retried, within a second or two. */
export const FAST_RECONNECT = {
  source_backoff_ms: 100,
  source_backoff_max_ms: 400,
  source_timeout_ms: 1000,
  camera_stale_after_ms: 800,
  camera_offline_after_ms: 2000,
  line_registry_flush_ms: 100,
};
