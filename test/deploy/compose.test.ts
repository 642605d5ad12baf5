// The Compose files, checked without a container engine: structure, start order,
// health checks, configuration by real SIGHTLINE_* keys, secrets only from .env, and
// every mounted file present. (No compose-spec JSON schema is installed, so these are
// structural checks; `docker compose config` would add the spec's own.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import { parse } from 'yaml';
import { CONFIG_KEYS } from '../../src/config/schema.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DIR = join(ROOT, 'deploy/compose');

interface Healthcheck {
  test?: string[] | string;
  disable?: boolean;
  interval?: string;
  start_period?: string;
}
interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string };
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string | number | boolean>;
  ports?: string[];
  volumes?: string[];
  healthcheck?: Healthcheck;
  depends_on?: Record<string, { condition: string }>;
  deploy?: { replicas?: number };
  restart?: string;
  stop_grace_period?: string;
  read_only?: boolean;
}
interface ComposeFile {
  name?: string;
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

function load(file: string): { text: string; compose: ComposeFile } {
  const text = readFileSync(join(DIR, file), 'utf8');
  // Compose resolves YAML anchors and `<<` merge keys; so does this.
  return { text, compose: parse(text, { merge: true }) as ComposeFile };
}

const seconds = (duration: string | undefined) => {
  const m = /^(\d+)(ms|s|m)$/.exec(duration ?? '');
  assert.ok(m, `a duration: ${duration}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60 }[m[2] as 'ms' | 's' | 'm'];
};
const healthy = (s: Service | undefined) => Boolean(s?.healthcheck?.test) && s?.healthcheck?.disable !== true;
const shutdownSeconds = (s: Service) => Number(s.environment?.SIGHTLINE_SHUTDOWN_TIMEOUT_MS ?? 10_000) / 1000;

/** Checks that hold for every Compose file here. */
function checkCommon(file: string, compose: ComposeFile): void {
  const services = compose.services;
  assert.ok(Object.keys(services).length > 0, `${file}: services`);
  for (const [name, service] of Object.entries(services)) {
    const where = `${file}: ${name}`;
    assert.ok(service.image || service.build, `${where} has an image or a build`);
    if (service.build) {
      const context = resolve(DIR, service.build.context);
      assert.ok(existsSync(join(context, service.build.dockerfile ?? 'Dockerfile')), `${where}: the build context holds the Dockerfile`);
    }
    if (service.ports?.length) assert.ok(healthy(service), `${where} serves (ports) and has a health check`);
    for (const [dep, { condition }] of Object.entries(service.depends_on ?? {})) {
      assert.ok(services[dep], `${where} depends on ${dep}, which exists`);
      if (condition === 'service_healthy') assert.ok(healthy(services[dep]), `${where} waits for ${dep} to be healthy: ${dep} needs a health check`);
      else if (condition === 'service_completed_successfully') assert.equal(services[dep]!.restart, 'no', `${dep} is a one-shot`);
      else assert.fail(`${where}: depends_on ${dep} with condition ${condition}: use service_healthy or service_completed_successfully`);
    }
    for (const [key, value] of Object.entries(service.environment ?? {})) {
      if (!key.startsWith('SIGHTLINE_')) continue;
      assert.ok((CONFIG_KEYS as string[]).includes(key.slice('SIGHTLINE_'.length).toLowerCase()), `${where}: ${key} is not a config key`);
      assert.equal(typeof value, 'string', `${where}: ${key} is a string (Compose refuses numbers and booleans in a mapping)`);
    }
    for (const volume of service.volumes ?? []) {
      const [source, target] = volume.split(':');
      assert.ok(target?.startsWith('/'), `${where}: ${volume} mounts at an absolute path`);
      if (source!.startsWith('.') || source!.startsWith('/')) {
        const path = resolve(DIR, source!);
        assert.ok(path.startsWith(join(ROOT, 'deploy')), `${where}: ${source} is under deploy/`);
        assert.ok(existsSync(path), `${where}: mounted ${source} exists`);
      } else {
        assert.ok(compose.volumes && source! in compose.volumes, `${where}: named volume ${source} is declared`);
      }
    }
    if (service.image === 'sightline:local' && service.command) {
      assert.ok(healthy(service) || service.command[0] === 'worker', `${where}: a sightline server has a health check`);
      assert.ok(
        seconds(service.stop_grace_period) > shutdownSeconds(service),
        `${where}: stop_grace_period exceeds shutdown_timeout_ms, so the drain ends before SIGKILL`,
      );
    }
  }
}

test('compose.embedded.yml: one sightline service, its data in a named volume, health-checked on /livez', () => {
  const { compose } = load('compose.embedded.yml');
  checkCommon('compose.embedded.yml', compose);
  const names = Object.keys(compose.services);
  assert.deepEqual(names, ['sightline']);
  const service = compose.services.sightline!;
  assert.deepEqual(service.command, ['serve']);
  assert.ok(
    service.ports?.some((p) => /(^|:)8080:8080$/.test(p)),
    'port 8080',
  );
  const dataDir = service.environment?.SIGHTLINE_DATA_DIR ?? '/data';
  const mount = service.volumes?.find((v) => v.split(':')[1] === dataDir);
  assert.ok(mount && !mount.startsWith('.'), 'the data dir is a named volume');
  assert.match(JSON.stringify(service.healthcheck?.test), /\/livez/);
});

test('compose.distributed.yml: API ×2, workers ×2, RabbitMQ, PostgreSQL, Prometheus, Grafana, Alertmanager in order', () => {
  const { compose } = load('compose.distributed.yml');
  checkCommon('compose.distributed.yml', compose);
  const s = compose.services;
  for (const name of ['api', 'worker', 'rabbitmq', 'postgres', 'prometheus', 'grafana', 'alertmanager']) assert.ok(s[name], `service ${name}`);
  assert.deepEqual(s.api!.command, ['serve', '--no-worker']);
  assert.equal(s.api!.deploy?.replicas, 2);
  assert.deepEqual(s.worker!.command, ['worker']);
  assert.equal(s.worker!.deploy?.replicas, 2);
  for (const name of ['api', 'worker']) {
    const env = s[name]!.environment!;
    assert.match(String(env.SIGHTLINE_QUEUE_URL), /^amqp:\/\/[^@]+@rabbitmq:5672$/, `${name} uses the rabbitmq service`);
    assert.match(String(env.SIGHTLINE_STORE_URL), /^postgres:\/\/[^@]+@postgres:5432\/sightline$/, `${name} uses the postgres service`);
    assert.equal(s[name]!.depends_on?.rabbitmq?.condition, 'service_healthy');
    assert.equal(s[name]!.depends_on?.postgres?.condition, 'service_healthy');
  }
  // Uploads and snapshots live under data_dir and must be shared by API replicas and workers.
  const dataMount = (name: string) => s[name]!.volumes?.find((v) => v.endsWith(`:${s[name]!.environment!.SIGHTLINE_DATA_DIR}`));
  assert.ok(dataMount('api') && dataMount('api') === dataMount('worker'), 'API and workers share one data volume');
  // The worker keeps the image's health check, which asks /livez on worker_http_port too.
  assert.notEqual(s.worker!.healthcheck?.disable, true);
  assert.equal(s.grafana!.depends_on?.prometheus?.condition, 'service_healthy');
  assert.equal(s.prometheus!.depends_on?.alertmanager?.condition, 'service_healthy');
});

test('compose.distributed.yml: secrets come from the uncommitted .env, named in .env.example', () => {
  const { text, compose } = load('compose.distributed.yml');
  const interpolated = new Set([...text.matchAll(/\$\{([A-Z0-9_]+)(?::?[?-][^}]*)?\}/g)].map((m) => m[1]!));
  const example = new Set(
    readFileSync(join(DIR, '.env.example'), 'utf8')
      .split('\n')
      .filter((l) => /^[A-Z0-9_]+=/.test(l))
      .map((l) => l.split('=')[0]!),
  );
  assert.deepEqual([...interpolated].sort(), [...example].sort(), '.env.example names exactly the variables the file needs');
  assert.match(readFileSync(join(DIR, '.gitignore'), 'utf8'), /^\.env$/m, '.env is never committed');
  assert.doesNotMatch(text.replace(/\$\{[^}]+\}/g, ''), /\$[^$]/, 'no stray $ (Compose would interpolate it)');
  for (const [name, service] of Object.entries(compose.services)) {
    for (const [key, value] of Object.entries(service.environment ?? {})) {
      const secretish = /PASSWORD|PASS$|SECRET/.test(key) || /:\/\/[^/@]+:[^/@]+@/.test(String(value));
      if (secretish) assert.match(String(value), /\$\{[A-Z0-9_]+:\?[^}]+\}/, `${name}: ${key} comes from .env and stops \`up\` when missing`);
    }
  }
});

test('compose.distributed.yml: Prometheus, Grafana and Alertmanager get the files of deploy/', () => {
  const { compose } = load('compose.distributed.yml');
  const s = compose.services;
  const mount = (service: string, target: string) => s[service]!.volumes?.find((v) => v.split(':')[1] === target)?.split(':')[0];
  const prometheusConfig = resolve(DIR, mount('prometheus', '/etc/prometheus/prometheus.yml')!);
  assert.ok(statSync(prometheusConfig).isFile());
  assert.equal(resolve(DIR, mount('prometheus', '/etc/prometheus/rules')!), join(ROOT, 'deploy/prometheus/rules'), 'the generated rules');
  const config = parse(readFileSync(prometheusConfig, 'utf8')) as {
    rule_files: string[];
    alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
    scrape_configs: { job_name: string; authorization?: { credentials_file: string }; dns_sd_configs?: { names: string[]; port: number }[] }[];
  };
  assert.deepEqual(config.rule_files, ['/etc/prometheus/rules/*.rules.yml']);
  assert.deepEqual(config.alerting.alertmanagers[0]!.static_configs[0]!.targets, ['alertmanager:9093']);
  const job = config.scrape_configs.find((j) => j.job_name === 'sightline')!;
  assert.deepEqual(job.dns_sd_configs, [{ names: ['api'], type: 'A', port: 8080, refresh_interval: '15s' }], 'every api replica, by DNS');
  // The viewer key for /metrics: written by the one-shot service into the volume Prometheus reads.
  const keyFile = job.authorization!.credentials_file;
  const keyVolume = s.prometheus!.volumes!.find((v) => keyFile.startsWith(`${v.split(':')[1]}/`))!.split(':')[0]!;
  const writer = s['prometheus-key']!;
  const writerMount = writer.volumes!.find((v) => v.startsWith(`${keyVolume}:`))!.split(':')[1]!;
  const script = writer.entrypoint![2]!;
  assert.ok(script.includes(`'${writerMount}/${keyFile.split('/').at(-1)}'`), 'the key is written where Prometheus reads it');
  assert.match(script, /'keys', 'create'.*'--role', 'viewer'/);
  new Script(script, { filename: 'prometheus-key' }); // throws on a syntax error
  assert.equal(s.prometheus!.depends_on?.['prometheus-key']?.condition, 'service_completed_successfully');

  const alertmanager = resolve(DIR, mount('alertmanager', '/etc/alertmanager/alertmanager.yml')!);
  assert.ok((parse(readFileSync(alertmanager, 'utf8')) as { route: { receiver: string } }).route.receiver);

  assert.equal(resolve(DIR, mount('grafana', '/etc/grafana/provisioning')!), join(ROOT, 'deploy/grafana/provisioning'));
  const dashboards = resolve(DIR, mount('grafana', '/var/lib/grafana/dashboards/sightline')!);
  assert.ok(existsSync(join(dashboards, 'sightline.json')), 'the provisioned dashboard');
  const provider = parse(readFileSync(join(ROOT, 'deploy/grafana/provisioning/dashboards/sightline.yml'), 'utf8')) as {
    providers: { options: { path: string } }[];
  };
  assert.equal(provider.providers[0]!.options.path, '/var/lib/grafana/dashboards/sightline', 'the provider reads where the dashboards are mounted');
  const datasource = parse(readFileSync(join(ROOT, 'deploy/grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as {
    datasources: { url: string }[];
  };
  const host = new URL(datasource.datasources[0]!.url).hostname;
  assert.ok(s[host], `the data source's host ${host} is a service`);
  assert.ok(dirname(prometheusConfig).startsWith(DIR));
});
