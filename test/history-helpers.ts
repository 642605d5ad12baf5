import type { TestContext } from 'node:test';
import { defaultConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { bucketIndex, bucketLowerBound, bucketUpperBound, startHistory, type History } from '../src/history/index.js';
import type { InspectedFrame } from '../src/inspection/observers.js';
import { createLogger } from '../src/logger.js';
import { createMetrics, type Metrics } from '../src/metrics/metrics.js';
import type { DetectionResult, Verdict } from '../src/protocol/results.js';

/** A clock the test moves: the recorder and the queries read it. */
export class TestClock {
  constructor(public t: number) {}
  readonly now = () => this.t;
}

/** A process of the history as a test drives it: its own metrics registry, recorder and reader, no timer. */
export interface TestProcess {
  history: History;
  metrics: Metrics;
  /** One result of `line` with a server time of `latencyMs`, at the clock's time. */
  result(line: string, verdict: Verdict, latencyMs: number): void;
}

export function historyConfig(overrides: Partial<Config>): Config {
  return defaultConfig({ log_level: 'silent', ...overrides });
}

export function testProcess(t: TestContext, config: Config, clock: TestClock, processId: string): TestProcess {
  const metrics = createMetrics();
  const history = startHistory({ config, logger: createLogger('silent'), metrics, now: clock.now, processId, timer: false });
  t.after(() => history.close());
  return {
    history,
    metrics,
    result(line, verdict, latencyMs) {
      const result: DetectionResult = {
        request_id: `r-${Math.random()}`,
        line,
        camera: 'default',
        model: { name: 'm', version: '1' },
        image: { width: 8, height: 8 },
        detections: [],
        verdict,
        timings_ms: { queue: 0, decode: 0, preprocess: 0, infer: latencyMs, postprocess: 0, total: latencyMs },
      };
      const frame: InspectedFrame = { source: 'sync', result, image: Buffer.alloc(0), at: clock.t };
      history.recorder.onInspected(frame);
    },
  };
}

/** The nearest-rank q-quantile of the values sent. */
export function exactQuantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] as number;
}

/** Whether an estimate lies in the histogram bucket of the exact value: the histogram's own error. */
export function inBucketOf(estimate: number, exact: number): boolean {
  const i = bucketIndex(exact);
  return estimate >= bucketLowerBound(i) - 1e-3 && estimate <= bucketUpperBound(i) + 1e-3;
}

/** A deterministic pseudo-random sequence in [0, 1) (mulberry32). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
