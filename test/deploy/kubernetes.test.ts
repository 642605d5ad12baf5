// The Kustomize overlays, rendered with `kubectl kustomize` (offline) and checked:
// every core/apps/policy/autoscaling/networking object against the Kubernetes
// schemas (kubernetes-models), KEDA's ScaledObject by structure, and the properties
// the deployment relies on: probes, labels, grace periods, the PDB, the HPA.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { CONFIG_KEYS, ConfigSchema } from '../../src/config/schema.js';
import { requireOrSkip } from '../helpers/requirements.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KUBERNETES = join(ROOT, 'deploy/kubernetes');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const KUBECTL = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;

// biome-ignore lint/suspicious/noExplicitAny: rendered YAML, checked field by field below
type Obj = Record<string, any>;

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/Ingress': Ingress,
};
const LABELS = ['name', 'instance', 'version', 'component', 'part-of', 'managed-by'].map((l) => `app.kubernetes.io/${l}`);

function render(dir: string, loadRestrictor = false): Obj[] {
  const args = ['kustomize', ...(loadRestrictor ? ['--load-restrictor', 'LoadRestrictionsNone'] : []), dir];
  const out = execFileSync('kubectl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Obj | null)
    .filter((d): d is Obj => d !== null);
}

function rendered(t: TestContext, overlay: string): Obj[] | undefined {
  if (!requireOrSkip(t, KUBECTL, 'kubectl (kubernetes-client)')) return undefined;
  return render(join(KUBERNETES, 'overlays', overlay));
}

const find = (objs: Obj[], kind: string, name: string) => {
  const obj = objs.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(obj, `${kind}/${name} is rendered`);
  return obj;
};
const container = (deployment: Obj) => deployment.spec.template.spec.containers.find((c: Obj) => c.name === 'sightline') as Obj;
const preStopSeconds = (c: Obj) => {
  const command = c.lifecycle?.preStop?.exec?.command as string[] | undefined;
  return command?.[0] === 'sleep' ? Number(command[1]) : (c.lifecycle?.preStop?.sleep?.seconds ?? 0);
};
const defaultShutdownMs = (ConfigSchema.properties.shutdown_timeout_ms as { default: number }).default;

/** The environment a container gets from its env and envFrom (ConfigMap and Secret), env winning. */
function environment(objs: Obj[], c: Obj): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    const source = from.configMapRef
      ? find(objs, 'ConfigMap', from.configMapRef.name).data
      : { ...find(objs, 'Secret', from.secretRef.name).stringData, ...find(objs, 'Secret', from.secretRef.name).data };
    Object.assign(env, source);
  }
  for (const e of c.env ?? []) env[e.name] = e.value;
  return env;
}

/** Checks that hold for every object of every overlay. */
function checkAll(objs: Obj[]): void {
  assert.ok(objs.length > 0);
  for (const obj of objs) {
    const id = `${obj.kind}/${obj.metadata?.name}`;
    for (const label of LABELS) assert.ok(obj.metadata.labels?.[label], `${id} has ${label}`);
    assert.equal(obj.metadata.labels['app.kubernetes.io/version'], VERSION, `${id}: version label is package.json's`);
    const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
    if (Model) new Model(obj as never).validate();
    else assert.equal(obj.apiVersion, 'keda.sh/v1alpha1', `${id}: ${obj.apiVersion} has no schema check here`);
    for (const [key, value] of Object.entries((obj.kind === 'ConfigMap' ? obj.data : obj.kind === 'Secret' ? obj.stringData : undefined) ?? {})) {
      if (key.startsWith('SIGHTLINE_')) assert.ok((CONFIG_KEYS as string[]).includes(key.slice(10).toLowerCase()), `${id}: ${key} is not a config key`);
      if (obj.kind === 'ConfigMap') assert.doesNotMatch(String(value), /:\/\/[^/@]+:[^/@]+@/, `${id}: ${key} holds a password; put it in the Secret`);
    }
  }
  for (const deployment of objs.filter((o) => o.kind === 'Deployment')) {
    const id = `Deployment/${deployment.metadata.name}`;
    const pod = deployment.spec.template;
    for (const label of LABELS) assert.ok(pod.metadata.labels[label], `${id}: pods have ${label}`);
    for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels)) assert.equal(pod.metadata.labels[k], v, `${id}: the selector matches its pods`);
    assert.equal(deployment.spec.selector.matchLabels['app.kubernetes.io/version'], undefined, `${id}: no version in the immutable selector`);
    const spec = pod.spec;
    assert.equal(spec.securityContext.runAsNonRoot, true, `${id}: runAsNonRoot`);
    assert.equal(spec.securityContext.runAsUser, 10001, `${id}: the image's uid`);
    assert.equal(spec.automountServiceAccountToken, false);
    for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
      assert.equal(c.image, `sightline:${VERSION}`, `${id}/${c.name}: image tag is package.json's version`);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${id}/${c.name}: read-only root`);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
      for (const kind of ['requests', 'limits'])
        for (const r of ['cpu', 'memory']) assert.ok(c.resources?.[kind]?.[r], `${id}/${c.name}: resources.${kind}.${r}`);
      for (const m of c.volumeMounts ?? [])
        assert.ok(
          spec.volumes.some((v: Obj) => v.name === m.name),
          `${id}/${c.name}: volume ${m.name} exists`,
        );
    }
    const main = container(deployment);
    const tmp = main.volumeMounts.find((m: Obj) => m.mountPath === '/tmp');
    assert.ok(tmp && spec.volumes.find((v: Obj) => v.name === tmp.name).emptyDir, `${id}: /tmp is an emptyDir (read-only root)`);
    for (const v of spec.volumes.filter((v: Obj) => v.persistentVolumeClaim)) find(objs, 'PersistentVolumeClaim', v.persistentVolumeClaim.claimName);
    // SIGKILL must not cut the drain short: preStop, then shutdown_timeout_ms, then margin.
    const env = environment(objs, main);
    const drain = preStopSeconds(main) + Number(env.SIGHTLINE_SHUTDOWN_TIMEOUT_MS ?? defaultShutdownMs) / 1000;
    assert.ok(
      spec.terminationGracePeriodSeconds >= drain + 5,
      `${id}: terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} ≥ drain ${drain} s + margin`,
    );
  }
}

/** The API server's probes: a start-up allowance on /livez, then liveness /livez and readiness /readyz. */
function checkServerProbes(deployment: Obj): void {
  const c = container(deployment);
  const port = c.ports.find((p: Obj) => p.containerPort === 8080);
  assert.ok(port, 'port 8080');
  assert.equal(c.startupProbe.httpGet.path, '/livez');
  assert.equal(c.livenessProbe.httpGet.path, '/livez');
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) assert.ok([port.name, 8080].includes(probe.httpGet.port));
  assert.notDeepEqual(c.startupProbe, c.livenessProbe, 'the start-up probe is its own');
  const startupBudget = c.startupProbe.periodSeconds * c.startupProbe.failureThreshold;
  assert.ok(startupBudget >= 180, `models get ${startupBudget} s to load before liveness counts (≥ 180 s)`);
  assert.ok(startupBudget > 4 * c.livenessProbe.periodSeconds * c.livenessProbe.failureThreshold, 'start-up is far more generous than liveness');
  assert.ok(preStopSeconds(c) >= 5, 'preStop waits for the endpoints to be removed');
}

test('embedded overlay: one serve pod, Recreate, data and models on PVCs', (t) => {
  const objs = rendered(t, 'embedded');
  if (!objs) return;
  checkAll(objs);
  const deployments = objs.filter((o) => o.kind === 'Deployment');
  assert.equal(deployments.length, 1);
  const api = deployments[0]!;
  assert.equal(api.spec.replicas, 1);
  assert.deepEqual(api.spec.strategy, { type: 'Recreate' }, 'never two pods on one SQLite volume');
  assert.deepEqual(container(api).args, ['serve']);
  checkServerProbes(api);
  const env = environment(objs, container(api));
  assert.equal(env.SIGHTLINE_QUEUE_URL ?? '', '', 'the SQLite queue');
  const mounts = Object.fromEntries(container(api).volumeMounts.map((m: Obj) => [m.mountPath, m.name]));
  const claim = (mountPath: string) => api.spec.template.spec.volumes.find((v: Obj) => v.name === mounts[mountPath])?.persistentVolumeClaim?.claimName;
  assert.equal(find(objs, 'PersistentVolumeClaim', claim(env.SIGHTLINE_DATA_DIR!)).spec.accessModes[0], 'ReadWriteOnce');
  assert.ok(claim(env.SIGHTLINE_MODELS_DIR!), 'models_dir is on a PVC');
  const service = find(objs, 'Service', 'sightline');
  for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(api.spec.template.metadata.labels[k], v, 'the Service selects the pod');
  assert.deepEqual(
    objs.filter((o) => ['HorizontalPodAutoscaler', 'ScaledObject'].includes(o.kind)),
    [],
    'SQLite does not scale out',
  );
});

test('distributed overlay: API and worker Deployments on external RabbitMQ and PostgreSQL from a Secret', (t) => {
  const objs = rendered(t, 'distributed');
  if (!objs) return;
  checkAll(objs);
  const api = find(objs, 'Deployment', 'sightline-api');
  const worker = find(objs, 'Deployment', 'sightline-worker');
  assert.deepEqual(container(api).args, ['serve', '--no-worker']);
  assert.deepEqual(container(worker).args, ['worker']);
  assert.ok(api.spec.replicas >= 2);
  assert.equal(api.spec.strategy.rollingUpdate.maxUnavailable, 0, 'a rollout adds before it removes');
  checkServerProbes(api);
  assert.equal(api.metadata.labels['app.kubernetes.io/component'], 'api');
  assert.equal(worker.metadata.labels['app.kubernetes.io/component'], 'worker');
  for (const d of [api, worker]) {
    const c = container(d);
    const env = environment(objs, c);
    assert.match(env.SIGHTLINE_QUEUE_URL!, /^amqp:\/\//);
    assert.match(env.SIGHTLINE_STORE_URL!, /^postgres:\/\//);
    const secret = find(objs, 'Secret', c.envFrom.find((f: Obj) => f.secretRef).secretRef.name);
    assert.ok(secret.stringData.SIGHTLINE_QUEUE_URL && secret.stringData.SIGHTLINE_STORE_URL, 'the URLs (with passwords) are in the Secret');
    const shared = c.volumeMounts.find((m: Obj) => m.mountPath === env.SIGHTLINE_DATA_DIR);
    const claim = d.spec.template.spec.volumes.find((v: Obj) => v.name === shared.name).persistentVolumeClaim.claimName;
    assert.equal(find(objs, 'PersistentVolumeClaim', claim).spec.accessModes[0], 'ReadWriteMany', 'uploads and snapshots are shared by every pod');
  }
  // A worker is probed on worker_http_port (9464): starting up is not death, readiness is /readyz.
  const w = container(worker);
  assert.equal(w.ports.find((p: Obj) => p.name === 'http-metrics')?.containerPort, 9464);
  assert.equal(w.startupProbe.httpGet.path, '/livez');
  assert.ok(w.startupProbe.periodSeconds * w.startupProbe.failureThreshold >= 180, 'model loading fits in the startup probe');
  assert.equal(w.livenessProbe.httpGet.path, '/livez');
  assert.equal(w.readinessProbe.httpGet.path, '/readyz');
  // A scaled-in worker finishes or gives back its jobs before SIGKILL.
  const workerDrain = Number(environment(objs, w).SIGHTLINE_SHUTDOWN_TIMEOUT_MS) / 1000;
  assert.ok(workerDrain >= 30 && worker.spec.template.spec.terminationGracePeriodSeconds >= workerDrain + 15);
  assert.equal(objs.filter((o) => o.kind === 'Service').length, 1, 'workers have no Service');
});

test('distributed overlay: PodDisruptionBudgets and the API HorizontalPodAutoscaler', (t) => {
  const objs = rendered(t, 'distributed');
  if (!objs) return;
  const api = find(objs, 'Deployment', 'sightline-api');
  const worker = find(objs, 'Deployment', 'sightline-worker');
  const pdbs = objs.filter((o) => o.kind === 'PodDisruptionBudget');
  const covering = (d: Obj) => pdbs.filter((p) => Object.entries(p.spec.selector.matchLabels).every(([k, v]) => d.spec.template.metadata.labels[k] === v));
  assert.equal(covering(api).length, 1, 'one PDB covers the API pods');
  assert.equal(covering(api)[0]!.spec.minAvailable, 1);
  assert.ok(covering(api)[0]!.spec.minAvailable < api.spec.replicas, 'the budget allows an eviction (else drains block)');
  assert.equal(covering(worker).length, 1, 'one PDB covers the workers');
  assert.equal(covering(worker)[0]!.spec.maxUnavailable, 1);

  const hpa = find(objs, 'HorizontalPodAutoscaler', 'sightline-api');
  assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'sightline-api' });
  assert.ok(hpa.spec.minReplicas >= 2 && hpa.spec.maxReplicas > hpa.spec.minReplicas);
  const cpu = hpa.spec.metrics.find((m: Obj) => m.type === 'Resource');
  assert.equal(cpu.resource.name, 'cpu');
  assert.ok(cpu.resource.target.averageUtilization > 0 && cpu.resource.target.averageUtilization < 100);
  const pods = hpa.spec.metrics.find((m: Obj) => m.type === 'Pods');
  assert.equal(pods.pods.metric.name, 'sightline_inference_queue_depth', 'per-pod inference backlog (prometheus-adapter rule in docs/deployment.md)');
  // The adapter derives it from a series that Sightline documents (docs/metrics.md).
  assert.match(readFileSync(join(ROOT, 'docs/metrics.md'), 'utf8'), /`sightline_queue_depth` \| `queue` \| gauge: queue `infer:<model>:<version>`/);
  assert.match(readFileSync(join(ROOT, 'docs/deployment.md'), 'utf8'), /sightline_queue_depth\{queue=~"infer:\.\*"/);
  assert.ok(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds >= 300, 'no flapping: models take time to load');
  assert.equal(api.spec.template.spec.containers.length, 1);
});

test('distributed overlay: the KEDA ScaledObject scales workers on ready + unacknowledged jobs, slowly inwards', (t) => {
  const objs = rendered(t, 'distributed');
  if (!objs) return;
  const worker = find(objs, 'Deployment', 'sightline-worker');
  const scaled = find(objs, 'ScaledObject', 'sightline-worker');
  assert.equal(scaled.apiVersion, 'keda.sh/v1alpha1');
  assert.deepEqual(scaled.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: worker.metadata.name });
  assert.ok(scaled.spec.minReplicaCount >= 1, 'a warm worker stays');
  assert.ok(scaled.spec.maxReplicaCount > scaled.spec.minReplicaCount);
  assert.ok(Number.isInteger(scaled.spec.pollingInterval) && Number.isInteger(scaled.spec.cooldownPeriod));
  const scaleDown = scaled.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown;
  assert.ok(scaleDown.stabilizationWindowSeconds >= 300);
  assert.deepEqual(scaleDown.policies, [{ type: 'Pods', value: 1, periodSeconds: 60 }], 'one worker at a time');
  // The behaviour block is an HPA behaviour: the HPA schema checks it.
  new HorizontalPodAutoscaler({
    metadata: { name: 'keda-check' },
    spec: {
      scaleTargetRef: scaled.spec.scaleTargetRef,
      maxReplicas: scaled.spec.maxReplicaCount,
      behavior: scaled.spec.advanced.horizontalPodAutoscalerConfig.behavior,
    },
  }).validate();
  assert.equal(scaled.spec.triggers.length, 1);
  const trigger = scaled.spec.triggers[0];
  assert.equal(trigger.type, 'rabbitmq');
  assert.equal(trigger.metadata.protocol, 'http', 'the management API counts unacknowledged messages; AMQP does not (keda #638)');
  assert.equal(trigger.metadata.mode, 'QueueLength');
  assert.match(trigger.metadata.value, /^\d+$/);
  const prefix = (ConfigSchema.properties.queue_prefix as { default: string }).default;
  assert.equal(trigger.metadata.queueName, `${prefix}.jobs`, 'the job queue of src/queue/amqp/topology.ts');
  assert.match(readFileSync(join(ROOT, 'src/queue/amqp/topology.ts'), 'utf8'), /jobs: `\$\{prefix\}\.jobs`/);
  assert.equal(trigger.metadata.host, undefined, 'no credentials in the ScaledObject');
  const auth = find(objs, 'TriggerAuthentication', trigger.authenticationRef.name);
  const ref = auth.spec.secretTargetRef.find((r: Obj) => r.parameter === 'host');
  const host = find(objs, 'Secret', ref.name).stringData[ref.key];
  assert.match(host, /^https?:\/\/[^@]+@[^/]+:15672\/%2F$/, 'the management API URL with the vhost');
});

test('optional components: the Ingress renders and validates when enabled, next to the worker probes', (t) => {
  if (!requireOrSkip(t, KUBECTL, 'kubectl (kubernetes-client)')) return;
  // Uncomment the optional components in a copy of the tree, as a user would.
  const tmp = mkdtempSync(join(tmpdir(), 'sightline-kustomize-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  cpSync(KUBERNETES, tmp, { recursive: true });
  const kustomization = join(tmp, 'overlays/distributed/kustomization.yaml');
  const text = readFileSync(kustomization, 'utf8');
  const enabled = text.replace(/^ {2}# - (\.\.\/\.\.\/components\/\S+)$/gm, '  - $1');
  assert.notEqual(enabled, text, 'the overlay lists the optional components, commented out');
  writeFileSync(kustomization, enabled);
  const objs = render(join(tmp, 'overlays/distributed'));
  checkAll(objs);
  const ingress = find(objs, 'Ingress', 'sightline');
  const backend = ingress.spec.rules[0].http.paths[0].backend.service;
  const service = find(objs, 'Service', backend.name);
  assert.ok(service.spec.ports.some((p: Obj) => p.name === backend.port.name));
  const worker = container(find(objs, 'Deployment', 'sightline-worker'));
  const port = worker.ports.find((p: Obj) => p.name === worker.livenessProbe.httpGet.port);
  assert.equal(port.containerPort, 9464, 'worker_http_port default');
  assert.equal(worker.startupProbe.httpGet.path, '/livez');
  assert.equal(worker.livenessProbe.httpGet.path, '/livez');
  assert.equal(worker.readinessProbe.httpGet.path, '/readyz');
  assert.ok(worker.startupProbe.periodSeconds * worker.startupProbe.failureThreshold >= 180);
});
