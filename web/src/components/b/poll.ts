import { onBeforeUnmount, onMounted, ref } from 'vue';
import { ApiError } from '../../api';
import { auth } from '../../auth';
import { live } from '../../live';

/**
 * Runs `fn` at once, then every `everyMs` (never two at a time), again after the
 * live connection resyncs or the credential changes, and stops when the page
 * unmounts. `error` holds the last failure (cleared by a success); `forbidden` is
 * true after a 403.
 */
export function usePoll(fn: (signal: AbortSignal) => Promise<void>, everyMs: number) {
  const error = ref('');
  const forbidden = ref(false);
  const loading = ref(true);
  let timer = 0;
  let running = false;
  let stopped = false;
  let ctrl: AbortController | null = null;
  const offs: (() => void)[] = [];

  async function run(): Promise<void> {
    if (running || stopped) return;
    running = true;
    ctrl = new AbortController();
    try {
      await fn(ctrl.signal);
      error.value = '';
      forbidden.value = false;
    } catch (err) {
      if ((err as Error).name !== 'AbortError') {
        forbidden.value = err instanceof ApiError && err.status === 403;
        error.value = (err as Error).message || String(err);
      }
    } finally {
      running = false;
      loading.value = false;
    }
  }

  onMounted(() => {
    void run();
    if (everyMs > 0) timer = window.setInterval(() => void run(), everyMs);
    offs.push(live.on('resync', () => void run()));
    offs.push(auth.onChange(() => void run()));
  });
  onBeforeUnmount(() => {
    stopped = true;
    clearInterval(timer);
    ctrl?.abort();
    for (const off of offs) off();
  });
  return { error, forbidden, loading, refresh: run };
}

/** '' below 80 % of the threshold, 'warn' from there, 'bad' at or above it. */
export function level(value: number | null | undefined, threshold: number | null | undefined): '' | 'warn' | 'bad' {
  if (value === null || value === undefined || threshold === null || threshold === undefined || !Number.isFinite(value)) return '';
  if (value >= threshold) return 'bad';
  if (value >= threshold * 0.8) return 'warn';
  return '';
}

/** The last non-null value of a series. */
export function lastOf(series: (number | null)[] | undefined): number | null {
  if (!series) return null;
  for (let i = series.length - 1; i >= 0; i--) {
    const v = series[i];
    if (v !== null && v !== undefined) return v;
  }
  return null;
}
