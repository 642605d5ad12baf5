export type { Output, OutputHealth, OutputScope } from './output.js';
export type { OutputContext } from './context.js';
export { OutputHub, type ConfiguredOutput } from './hub.js';
export { outputsFromConfig, type OutputsDeps } from './from-config.js';
export { Outbox, OutboxTables, type OutboxEntry } from './outbox.js';
export { OutboxWriter } from './outbox-writer.js';
export { eventFilter, passes, splitList, type EventFilter } from './filter.js';
export { outputMetrics, zeroOutputSeries, DROP_REASONS, type OutputMetrics, type DropReason } from './metrics.js';
export { LineState, LineStates, VERDICT_CODES, CAMERA_STATE_CODES, type PlcResult } from './line-state.js';
