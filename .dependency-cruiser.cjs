// Dependency rules for src/, checked by `npm run depcheck` (part of `npm test`).
// The layer map below is the module map of the docs: a folder may import its own
// files and the folders listed for it, nothing else in src/. protocol, errors and
// config are the bottom layer; metrics, alerts and log-analysis stand alone.
// Type-only imports count too (tsPreCompilationDeps): a type that a lower layer
// needs must live in that layer (or in protocol), not above it.

/** The bottom layer, which every layer above metrics may use. */
const BASE = ['protocol', 'config', 'errors.ts'];
/** The core: inference, store and queue may use each other, never anything above. */
const CORE = ['inference', 'store', 'queue'];

/** Folders (and top-level files) of src/ and what each may import besides itself. */
const LAYERS = {
  protocol: [],
  'errors.ts': [],
  'logger.ts': [],
  config: [],
  metrics: [],
  alerts: [],
  'log-analysis': [],
  // Verdict rules: their schema, the per-line settings file and the pure evaluation; below the core, which checks rules at model load.
  verdict: [...BASE],
  inference: [...BASE, 'verdict', 'store', 'queue'],
  store: [...BASE, 'inference', 'queue'],
  queue: [...BASE, 'inference', 'store'],
  events: [...BASE, ...CORE],
  // The one inspection path (detect, record, store, publish) shared by HTTP, jobs and the stream.
  inspection: [...BASE, 'metrics', ...CORE, 'events', 'verdict'],
  auth: [...BASE, 'store'],
  connections: [...BASE, 'metrics', 'auth'],
  jobs: [...BASE, 'metrics', ...CORE, 'events', 'inspection'],
  uploads: [...BASE, 'metrics', ...CORE, 'jobs'],
  // Lines and cameras: counts and states in the result store's database, changes on the event bus.
  lines: [...BASE, 'metrics', 'store', 'events', 'inspection'],
  stream: [...BASE, 'metrics', ...CORE, 'events', 'inspection', 'connections', 'lines'],
  health: [...BASE, ...CORE, 'events'],
  // Snapshots: files plus an index table in the result store's database, fed by the inspection observers.
  snapshots: [...BASE, 'metrics', 'store', 'inspection'],
  // History: its own tables in the result store's database, fed by the inspection observers and the metrics registry.
  history: [...BASE, 'metrics', 'store', 'inspection'],
  // Factory outputs: sinks of the event bus with outboxes in the result store's database.
  outputs: [...BASE, 'metrics', 'store', 'events', 'health'],
  // Pulled sources (hot folders, camera URLs): frames read by the server itself, through the inspection path, counted by the line registry, checked in /readyz.
  sources: [...BASE, 'metrics', ...CORE, 'events', 'inspection', 'lines', 'health'],
  // Model control: the control table in the result store's database, applied to the model repository.
  models: [...BASE, 'inference', 'store'],
  // Scaling signals: desired replica counts from the queue, throughput and latency; forecasts from the history.
  scaling: [...BASE, 'metrics', 'store', 'queue', 'history'],
  // Backup and restore of an embedded data dir (results, jobs, keys, snapshots) or a PostgreSQL store.
  backup: [...BASE, ...CORE, 'auth', 'snapshots', 'history', 'lines', 'outputs'],
  eval: ['inference', 'verdict'],
  // The client SDK ships as sightline/client without the server.
  client: ['protocol'],
  'index.ts': ['client'],
};
// runtime.ts builds what a process runs on (for serve and worker): anything below the server.
LAYERS['runtime.ts'] = Object.keys(LAYERS).filter((name) => name !== 'client' && name !== 'index.ts');
LAYERS.server = [...LAYERS['runtime.ts'], 'runtime.ts'];
LAYERS.cli = Object.keys(LAYERS).filter((name) => name !== 'index.ts');

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** `src/<folder>/…` or the top-level file `src/<name>.ts`. */
const pathOf = (name) => (name.endsWith('.ts') ? `^src/${escapeRegExp(name)}$` : `^src/${escapeRegExp(name)}/`);

const RULE_NAMES = { protocol: 'protocol-imports-only-protocol', client: 'client-imports-only-protocol' };

const layerRules = Object.entries(LAYERS)
  .filter(([name]) => !CORE.includes(name))
  .map(([name, allowed]) => ({
    name: RULE_NAMES[name] ?? `${name.replace(/\.ts$/, '')}-imports-upward`,
    comment: `src/${name} may import only ${allowed.length ? allowed.join(', ') : 'nothing else in src/'} (layer map in .dependency-cruiser.cjs).`,
    severity: 'error',
    from: { path: pathOf(name) },
    to: { path: '^src/', pathNot: [name, ...allowed].map(pathOf) },
  }));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Import cycles make load order fragile and keep modules from being used or tested alone.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'core-imports-upward',
      comment: 'inference, store and queue are the core: they import only each other, protocol, config, errors and verdict.',
      severity: 'error',
      from: { path: CORE.map(pathOf) },
      to: { path: '^src/', pathNot: [...new Set(CORE.flatMap((name) => [name, ...LAYERS[name]]))].map(pathOf) },
    },
    {
      name: 'folder-not-in-layer-map',
      comment: 'Every folder of src/ needs a place in LAYERS above, else no rule guards it.',
      severity: 'error',
      from: { path: '^src/', pathNot: Object.keys(LAYERS).map(pathOf) },
      to: {},
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import the cruiser cannot resolve is invisible to the rules above, so it fails too.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist)/' },
  },
};
