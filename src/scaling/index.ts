export * from './calculator.js';
export * from './forecast.js';
export { SignalReader, isApiRow, processRoles, type RoleFigures, type SignalWindow } from './signals.js';
export { ProfileSource, type ProfileSourceOptions } from './profile-source.js';
export { scalingMetrics, type ScalingMetrics } from './metrics.js';
export {
  Scaler,
  scalingSettings,
  CURRENT_WINDOW_MS,
  CAPACITY_WINDOW_MS,
  type ScalerOptions,
  type ScalingLogger,
  type ScalingState,
  type ScalingForecast,
  type RoleDecision,
} from './scaler.js';
