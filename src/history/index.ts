export { startHistory, historySettings, defaultProcessId, SAMPLE_INTERVAL_MS, type History, type HistoryOptions } from './history.js';
export { HistoryStore, lineResults, type BucketRows, type LineRow, type ProcessRow, type HistoryStoreOptions } from './history-store.js';
export { HistoryRecorder, GAUGES, OTHER_LINES, MAX_PENDING_BUCKETS, type GaugeName, type RecorderOptions } from './recorder.js';
export {
  planHistory,
  buildSeries,
  formatDuration,
  type HistoryAnswer,
  type HistoryPlan,
  type HistoryQuery,
  type HistorySettings,
  type GaugeSeries,
} from './query.js';
export { historyMetrics, type HistoryMetrics } from './metrics.js';
export * from './histogram.js';
