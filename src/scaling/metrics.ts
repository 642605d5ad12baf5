import { Gauge, type Registry } from 'prom-client';

export interface ScalingMetrics {
  desired: Gauge<'role'>;
  signal: Gauge<'role' | 'signal'>;
  forecast: Gauge<'role'>;
}

/** The scaling gauges on a registry; the same ones again when a second scaler shares it. */
export function scalingMetrics(registry: Registry): ScalingMetrics {
  const gauge = <L extends string>(name: string, help: string, labelNames: L[]) =>
    (registry.getSingleMetric(name) as Gauge<L> | undefined) ?? new Gauge<L>({ name, help, labelNames, registers: [registry] });
  return {
    desired: gauge('sightline_desired_replicas', 'Replicas a role should run: the largest signal, within the bounds, after scale-down stabilisation.', [
      'role',
    ]),
    signal: gauge('sightline_scaling_signal_replicas', 'Replicas one signal (queue, throughput, latency) asks for; absent while it does not vote.', [
      'role',
      'signal',
    ]),
    forecast: gauge(
      'sightline_forecast_desired_replicas',
      'Most replicas the throughput signal will ask for within the next 30 minutes, from the hour-of-week profile of the history.',
      ['role'],
    ),
  };
}
