export { AlertEngine, formatValue, type AlertEngineOptions, type AlertState, type AlertStatus, type AlertChange } from './engine.js';
export { ALERT_RULES, DEFAULT_ALERT_OPTIONS, promDuration, type AlertOptions, type AlertRule, type Severity, type Unit } from './rules.js';
export {
  WebhookNotifier,
  webhookPayload,
  type AlertLogger,
  type AlertNotification,
  type Notifier,
  type WebhookPayload,
  type WebhookNotifierOptions,
} from './notifier.js';
export { MetricsView, histogramQuantile } from './metrics-view.js';
export { alertOptionsFromConfig, alertWebhooksFromConfig, createAlertEngine, type CreateAlertEngineOptions } from './from-config.js';
