import { Gauge, type Registry } from 'prom-client';

/** `sightline_dependency_up{dependency}`: what SightlineDependencyDown (in-process and in Prometheus) reads. */
export function dependencyGauge(registry: Registry): Gauge<'dependency'> {
  return new Gauge({
    name: 'sightline_dependency_up',
    help: '1 while a dependency (store, queue broker, event bus, disk) answers its probe, 0 while it does not; absent until its first probe.',
    labelNames: ['dependency'] as const,
    registers: [registry],
  });
}
