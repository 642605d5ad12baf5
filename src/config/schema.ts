import { Type, type Static } from '@sinclair/typebox';
import { QUALITY_OVERRIDES_PATTERN } from './quality-overrides.js';

/**
 * The one place where every Sightline setting, its type, limits and default live.
 * Keys are snake_case; each is also `SIGHTLINE_<KEY>` in the environment and
 * `--<key-with-dashes>` on the command line. The config table of docs/configuration.md is checked
 * against this schema by a test, so docs cannot drift from code.
 */
export const ConfigSchema = Type.Object(
  {
    host: Type.String({ default: '0.0.0.0', minLength: 1, description: 'Listen address.' }),
    port: Type.Integer({ default: 8080, minimum: 0, maximum: 65535, description: 'Listen port (0 picks a free one).' }),
    data_dir: Type.String({
      default: './data',
      minLength: 1,
      description: 'Where the embedded default keeps its files (the SQLite result store).',
    }),
    store_url: Type.String({
      default: '',
      description: 'Result store: `sqlite:PATH`, `sqlite::memory:` or `postgres://…`; empty: `sqlite:<data_dir>/results.db`.',
    }),
    store_sync_results: Type.Boolean({
      default: true,
      description: 'Store the results of synchronous /v1/detect requests too.',
    }),
    queue_url: Type.String({
      default: '',
      description: 'Job queue: `sqlite:PATH`, `sqlite::memory:` or `amqp://…`; empty: `sqlite:<data_dir>/queue.db`.',
    }),
    queue_prefix: Type.String({
      default: 'sightline',
      pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$',
      description: 'Name prefix of the RabbitMQ exchanges and queues (amqp queue only).',
    }),
    queue_lease_ms: Type.Integer({
      default: 30_000,
      minimum: 100,
      description: "SQLite queue: how long a worker holds a job before a crashed worker's job comes back (renewed while it runs).",
    }),
    store_schema: Type.String({
      default: '',
      pattern: '^([A-Za-z_][A-Za-z0-9_]{0,62})?$',
      description: 'PostgreSQL schema for results and job states; empty: the search path.',
    }),
    worker: Type.Boolean({
      default: true,
      description: '`serve` runs a job worker in-process; false (`--no-worker`) makes an API-only replica.',
    }),
    worker_http_port: Type.Integer({
      default: 9464,
      minimum: 0,
      maximum: 65535,
      description: '`sightline worker` serves /livez, /readyz and /metrics on this port (0 picks a free one; it is logged).',
    }),
    worker_http_host: Type.String({ default: '0.0.0.0', minLength: 1, description: 'Listen address of the worker HTTP port.' }),
    worker_concurrency: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 1024,
      description: 'Jobs a worker holds at once; 0: 2 × model instances.',
    }),
    job_max_attempts: Type.Integer({
      default: 3,
      minimum: 1,
      maximum: 100,
      description: 'Attempts before a failing job goes to the dead letters.',
    }),
    job_backoff_ms: Type.Integer({
      default: 1000,
      minimum: 1,
      description: 'First retry delay of a failed job; doubles with each attempt (capped at 60 s).',
    }),
    queue_max_length: Type.Integer({
      default: 10_000,
      minimum: 1,
      description: 'Jobs waiting before POST /v1/jobs answers 503 QUEUE_FULL.',
    }),
    events_url: Type.String({
      default: '',
      pattern: '^(|memory:|amqps?://.*)$',
      description:
        "Event bus for live results: `memory:` (this process) or `amqp://…` (replicas see each other's results); empty: the queue's broker when queue_url is amqp, else `memory:`.",
    }),
    stream_max_in_flight: Type.Integer({
      default: 2,
      minimum: 1,
      maximum: 64,
      description: 'WebSocket stream: frames of one connection in the pipeline at once.',
    }),
    stream_max_pending: Type.Integer({
      default: 4,
      minimum: 0,
      maximum: 1024,
      description: 'WebSocket stream: frames of one connection waiting for a pipeline slot; beyond it frames are dropped.',
    }),
    stream_drop_policy: Type.Union([Type.Literal('oldest'), Type.Literal('newest')], {
      default: 'oldest',
      description: 'WebSocket stream: which frame a full connection drops, the oldest waiting one or the newest arrival.',
    }),
    stream_ping_interval_ms: Type.Integer({
      default: 15_000,
      minimum: 100,
      description: 'WebSocket stream: how often the server pings each connection.',
    }),
    stream_idle_timeout_ms: Type.Integer({
      default: 45_000,
      minimum: 100,
      description: 'WebSocket stream: a connection that sends nothing (not even a pong) for this long is closed (code 1001).',
    }),
    stream_status_interval_ms: Type.Integer({
      default: 5_000,
      minimum: 100,
      description: 'WebSocket stream: how often each connection gets a status message.',
    }),
    stream_max_subscriptions: Type.Integer({
      default: 64,
      minimum: 1,
      maximum: 10_000,
      description: 'WebSocket stream: lines one connection may subscribe to.',
    }),
    upload_max_bytes: Type.Integer({
      default: 64 * 1024 * 1024,
      minimum: 1024,
      description: 'Largest resumable upload (/v1/uploads), in bytes.',
    }),
    upload_expiry_ms: Type.Integer({
      default: 24 * 3_600_000,
      minimum: 1000,
      description: 'An unfinished upload is deleted this long after its creation.',
    }),
    uploads_dir: Type.String({
      default: '',
      description: 'Where unfinished uploads are kept; empty: `<data_dir>/uploads`.',
    }),
    // lines and cameras, snapshots, history (issue 14)
    camera_stale_after_ms: Type.Integer({
      default: 5_000,
      minimum: 100,
      description: 'A line/camera with no frame for this long is `stale`.',
    }),
    camera_offline_after_ms: Type.Integer({
      default: 60_000,
      minimum: 100,
      description: 'A line/camera with no frame for this long is `offline` (and fires SightlineCameraOffline).',
    }),
    line_registry_flush_ms: Type.Integer({
      default: 1_000,
      minimum: 50,
      maximum: 60_000,
      description: "How often a process writes its lines' and cameras' frame counts to the store and checks their states.",
    }),
    snapshots: Type.Boolean({
      default: true,
      description: 'Keep images of results (every NG, a sample of OK) for review, `/v1/results/:id/image` and export.',
    }),
    snapshots_dir: Type.String({
      default: '',
      description: 'Where snapshots are kept (a shared directory for API replicas and workers); empty: `<data_dir>/snapshots`.',
    }),
    snapshot_ok_sample_rate: Type.Number({
      default: 0.01,
      minimum: 0,
      maximum: 1,
      description: 'Share of OK results whose image is kept (every NG image is kept).',
    }),
    snapshot_max_bytes: Type.Integer({
      default: 2 * 1024 ** 3,
      minimum: 0,
      description: 'Snapshots kept in all, in bytes; the oldest go first.',
    }),
    snapshot_retention_days: Type.Number({
      default: 14,
      minimum: 0,
      maximum: 3650,
      description: 'Snapshots older than this are deleted (their results stay).',
    }),
    snapshot_max_pending: Type.Integer({
      default: 64,
      minimum: 1,
      maximum: 100_000,
      description: 'Snapshot writes waiting for the disk; beyond this, new ones are skipped and counted.',
    }),
    snapshot_latest_interval_ms: Type.Integer({
      default: 1_000,
      minimum: 0,
      maximum: 3_600_000,
      description: "Least time between two writes of a camera's newest frame (`latest.jpg`); a newer frame waits, replacing any waiting one.",
    }),
    history_resolution_ms: Type.Integer({
      default: 10_000,
      minimum: 1_000,
      description: 'Step of the fine history series (GET /v1/stats/history).',
    }),
    history_retention_ms: Type.Integer({
      default: 24 * 3_600_000,
      minimum: 60_000,
      description: 'How long the fine history series is kept.',
    }),
    history_rollup_resolution_ms: Type.Integer({
      default: 60_000,
      minimum: 1_000,
      description: 'Step of the coarse history series.',
    }),
    history_rollup_retention_ms: Type.Integer({
      default: 30 * 24 * 3_600_000,
      minimum: 60_000,
      description: 'How long the coarse history series is kept.',
    }),
    history_max_points: Type.Integer({
      default: 2_000,
      minimum: 10,
      maximum: 100_000,
      description: 'Most points one GET /v1/stats/history answer may hold; more is refused with HISTORY_TOO_MANY_POINTS.',
    }),
    history_max_lines: Type.Integer({
      default: 100,
      minimum: 1,
      maximum: 10_000,
      description: 'Lines kept apart per history bucket and process; results of further lines count under `_other`.',
    }),
    alert_eval_interval_ms: Type.Integer({
      default: 5_000,
      minimum: 0,
      description: 'How often the alert rules are evaluated; 0: never (GET /v1/alerts shows them unevaluated).',
    }),
    alert_for_ms: Type.Integer({ default: 60_000, minimum: 0, description: "How long an alert's condition must hold before it fires." }),
    alert_window_ms: Type.Integer({ default: 300_000, minimum: 1000, description: 'Window of the error-rate, latency, dead-letter and rejection alerts.' }),
    alert_webhooks: Type.String({
      default: '',
      description: 'URLs (comma-separated) that get firing and resolved alerts as JSON (Alertmanager webhook format).',
    }),
    alert_error_rate: Type.Number({
      default: 0.05,
      minimum: 0,
      maximum: 1,
      description: 'Share of 5xx answers in the window above which SightlineHighErrorRate fires.',
    }),
    alert_p95_latency_ms: Type.Number({ default: 1000, minimum: 0, description: 'p95 of /v1/detect durations above which SightlineHighLatency fires.' }),
    alert_queue_backlog: Type.Integer({ default: 1000, minimum: 0, description: 'Jobs waiting above which SightlineQueueBacklog fires.' }),
    alert_connections_ratio: Type.Number({
      default: 0.9,
      minimum: 0,
      maximum: 1,
      description: 'Share of max_connections open above which SightlineConnectionsNearLimit fires.',
    }),
    alert_rejected_per_s: Type.Number({
      default: 1,
      minimum: 0,
      description: 'Admission-control rejections per second above which SightlineRequestsRejected fires.',
    }),
    alert_history_size: Type.Integer({
      default: 500,
      minimum: 0,
      maximum: 100_000,
      description: 'Alert state changes kept in memory for GET /v1/alerts/history (newest first; lost on restart).',
    }),
    alert_event_loop_lag_ms: Type.Number({ default: 500, minimum: 0, description: 'Event-loop lag (p99) above which SightlineEventLoopLag fires.' }),
    alert_quality_check_ratio: Type.Number({
      default: 0.2,
      minimum: 0,
      maximum: 1,
      description:
        "Share of a line's verdicts in the window that are `check` (images outside the model's image-quality envelope) above which SightlineImageQualityDrift fires; judged once the line has 10 results in the window.",
    }),
    // health and system sampling (issue 7)
    dependency_check_interval_ms: Type.Integer({
      default: 5_000,
      minimum: 100,
      description: "How often /readyz's dependencies (broker, store, event bus, disk) are checked while they are up.",
    }),
    dependency_retry_base_ms: Type.Integer({
      default: 500,
      minimum: 10,
      description: 'First retry delay of a dependency that is down (at start-up and later); doubles per failed try.',
    }),
    dependency_retry_max_ms: Type.Integer({ default: 10_000, minimum: 10, description: 'Longest retry delay of a dependency that is down.' }),
    test_inference_interval_ms: Type.Integer({
      default: 60_000,
      minimum: 0,
      description: 'How often every READY model runs a real test inference for /readyz; 0: never.',
    }),
    min_free_disk_bytes: Type.Integer({
      default: 256 * 1024 * 1024,
      minimum: 0,
      description: 'Free disk under data_dir below which readiness fails (SQLite store or queue only); 0: not checked.',
    }),
    system_sample_interval_ms: Type.Integer({ default: 5_000, minimum: 100, description: 'How often CPU, memory and GPU gauges are sampled.' }),
    nvidia_smi_path: Type.String({
      default: 'nvidia-smi',
      description: 'nvidia-smi used for the GPU gauges; empty: no GPU sampling. Without a GPU the series are absent.',
    }),
    // identity, connections and limits (issue 8)
    auth: Type.Union([Type.Literal('auto'), Type.Literal('on'), Type.Literal('off')], {
      default: 'auto',
      description:
        '`on`: every request but /livez and /readyz needs an API key or JWT; `off`: none does; `auto`: requests from loopback addresses need none, others do.',
    }),
    auth_jwt_secret: Type.String({
      default: '',
      description: 'HMAC secret (HS256/384/512) that JWT bearer tokens are verified against; empty: no JWTs unless auth_jwt_public_key_file is set.',
    }),
    auth_jwt_public_key_file: Type.String({ default: '', description: 'PEM public key (RS*/ES*/PS*) that JWT bearer tokens are verified against.' }),
    auth_jwt_issuer: Type.String({ default: '', description: 'Required `iss` of JWTs; empty: not checked.' }),
    auth_jwt_audience: Type.String({ default: '', description: 'Required `aud` of JWTs; empty: not checked.' }),
    tls_cert_file: Type.String({ default: '', description: 'PEM certificate (chain): serve HTTPS/WSS instead of HTTP. Needs tls_key_file.' }),
    tls_key_file: Type.String({ default: '', description: 'PEM private key of tls_cert_file.' }),
    max_connections: Type.Integer({
      default: 200,
      minimum: 1,
      maximum: 1_000_000,
      description: 'Open client connections (HTTP sockets and WebSocket sessions) beyond which new ones are refused (503 + Retry-After, WebSocket close 1013).',
    }),
    max_connections_per_key: Type.Integer({
      default: 100,
      minimum: 0,
      description: 'Open connections per API key (or JWT subject), counted in each process; 0: no per-key limit.',
    }),
    max_connections_per_address: Type.Integer({ default: 100, minimum: 0, description: 'Open connections per remote address; 0: no per-address limit.' }),
    connection_reserve_high: Type.Number({
      default: 0.1,
      minimum: 0,
      maximum: 0.9,
      description:
        'Share of max_connections kept for `priority=high` requests and streams from API keys or JWTs with the ingest or admin role: others are refused once the rest is taken (none with auth=off).',
    }),
    max_websocket_connections: Type.Integer({
      default: 100,
      minimum: 0,
      maximum: 1_000_000,
      description:
        'WebSocket sessions (/v1/stream) among max_connections; more are closed with 1013, so that idle streams cannot take the places of HTTP clients. 0: no limit of their own.',
    }),
    max_probe_connections: Type.Integer({
      default: 16,
      minimum: 0,
      maximum: 10_000,
      description:
        'Connections for /livez, /readyz and /metrics served on top of max_connections when the other limits would refuse them (one request each, then closed). 0: probes get no allowance.',
    }),
    auth_recheck_interval_ms: Type.Integer({
      default: 2000,
      minimum: 100,
      maximum: 3_600_000,
      description:
        'How often the API keys of open WebSocket sessions are checked again; a session whose key was revoked (from any process) is closed with 4001.',
    }),
    connection_idle_timeout_ms: Type.Integer({ default: 60_000, minimum: 100, description: 'An HTTP connection with no request for this long is closed.' }),
    headers_timeout_ms: Type.Integer({ default: 10_000, minimum: 100, description: "Time a client has to send a request's headers (slowloris guard)." }),
    body_timeout_ms: Type.Integer({
      default: 60_000,
      minimum: 100,
      description: 'Time a client has to send a whole request, body included; slower ones get 408.',
    }),
    max_header_bytes: Type.Integer({
      default: 16 * 1024,
      minimum: 1024,
      maximum: 1024 * 1024,
      description: 'Largest request header block; larger ones get 431.',
    }),
    rate_limit_per_second: Type.Number({
      default: 100,
      minimum: 0,
      description:
        'Sustained requests per second per API key (per remote address without one; loopback callers trusted by auth=auto are not limited); 0: no rate limit.',
    }),
    rate_limit_burst: Type.Integer({
      default: 200,
      minimum: 1,
      description: 'Requests a key or address may send at once above the sustained rate (the bucket size).',
    }),
    rate_limit_url: Type.String({
      default: '',
      pattern: '^(|rediss?://.+)$',
      description:
        'Redis (`redis://host:6379/0`) holding the rate-limit buckets, so that every API replica draws from the same bucket per key (N replicas allow the configured rate, not N times it); empty: buckets in this process.',
    }),
    cors_origins: Type.String({
      default: '',
      pattern: '^\\s*((\\*|https?://[^\\s/,]+)\\s*(,\\s*(\\*|https?://[^\\s/,]+)\\s*)*)?$',
      description: 'Browser origins allowed to call the API (CORS), comma-separated (`https://dash.example:3000`); `*`: any origin; empty: CORS off.',
    }),
    // scaling signals (issue 17): sightline_desired_replicas and GET /v1/scaling
    scaling_interval_ms: Type.Integer({ default: 15_000, minimum: 100, description: 'How often the desired replica counts are computed.' }),
    scaling_target_queue_per_worker: Type.Number({
      default: 20,
      minimum: 0.1,
      description: 'Jobs waiting per worker the desired worker count aims at (queue depth ÷ this).',
    }),
    scaling_target_latency_ms: Type.Number({
      default: 1000,
      minimum: 1,
      description: "p95 server time a role's desired replica count aims at; above it the count grows in proportion.",
    }),
    scaling_target_utilization: Type.Number({
      default: 0.7,
      minimum: 0.05,
      maximum: 1,
      description: "Share of a replica's measured throughput that the desired count plans to use (headroom for bursts).",
    }),
    scaling_min_replicas: Type.Integer({ default: 1, minimum: 0, maximum: 10_000, description: 'Lower bound of every desired replica count.' }),
    scaling_max_replicas: Type.Integer({ default: 10, minimum: 1, maximum: 10_000, description: 'Upper bound of every desired replica count.' }),
    scaling_stabilization_window_ms: Type.Integer({
      default: 300_000,
      minimum: 0,
      description: 'A desired count goes down only to the highest value computed within this window (no flapping); it goes up at once.',
    }),
    // factory outputs (issue 16): every output is off until configured; see docs/outputs/README.md
    mqtt_url: Type.String({
      default: '',
      pattern: '^(|(mqtts?|wss?)://.+)$',
      description: 'MQTT broker of the MQTT output (`mqtt://host:1883`, `mqtts://…`, `ws://…`); empty: the MQTT output is off.',
    }),
    mqtt_topic_prefix: Type.String({
      default: 'sightline',
      pattern: '^[^#+\\s]+$',
      description: 'First level of every topic the MQTT output publishes (`<prefix>/<line>/result`, `<prefix>/available`, …).',
    }),
    mqtt_qos: Type.Integer({ default: 1, minimum: 0, maximum: 2, description: 'QoS of result messages (states and status are QoS 1 and retained).' }),
    mqtt_retain: Type.Boolean({ default: false, description: 'Publish result messages retained (the last result per line stays on the broker).' }),
    mqtt_username: Type.String({ default: '', description: 'MQTT user name; empty: none.' }),
    mqtt_password: Type.String({ default: '', description: 'MQTT password.' }),
    mqtt_ca_file: Type.String({ default: '', description: 'PEM CA certificate(s) that an `mqtts://` broker is verified against; empty: the system CAs.' }),
    mqtt_client_id: Type.String({
      default: '',
      maxLength: 128,
      description: 'MQTT client id (each replica needs its own); empty: `sightline-<host>-<pid>`, one per process.',
    }),
    mqtt_lines: Type.String({ default: '', description: 'Lines whose events the MQTT output publishes, comma-separated; empty: every line.' }),
    mqtt_verdicts: Type.String({
      default: 'ok,ng,check',
      pattern: '^\\s*(ok|ng|check)\\s*(,\\s*(ok|ng|check)\\s*)*$',
      description: 'Verdicts of the results the MQTT output publishes, comma-separated (`ng`: NG only).',
    }),
    mqtt_outbox_max: Type.Integer({
      default: 10_000,
      minimum: 1,
      maximum: 10_000_000,
      description:
        'MQTT messages kept (in the result store, so on disk in the embedded shape) while the broker is away; beyond it the oldest are dropped and counted.',
    }),
    mqtt_status_interval_ms: Type.Integer({ default: 10_000, minimum: 100, description: 'How often the retained `<prefix>/status` summary is republished.' }),
    mqtt_sparkplug: Type.Boolean({ default: false, description: 'Publish Sparkplug B (`spBv1.0/<group>/…`) instead of plain JSON topics.' }),
    sparkplug_group_id: Type.String({ default: 'Sightline', pattern: '^[^/#+]+$', description: 'Sparkplug B group id.' }),
    sparkplug_node_id: Type.String({ default: '', pattern: '^[^/#+]*$', description: 'Sparkplug B edge node id; empty: the host name.' }),
    webhook_urls: Type.String({
      default: '',
      pattern: '^\\s*(https?://[^\\s,]+\\s*(,\\s*https?://[^\\s,]+\\s*)*)?$',
      description: 'URLs that every result (after the filters) is POSTed to as JSON, comma-separated; empty: the webhook output is off.',
    }),
    webhook_secret: Type.String({
      default: '',
      description: 'HMAC-SHA256 key of the `X-Sightline-Signature` header (over `<timestamp>.<body>`); empty: requests are not signed.',
    }),
    webhook_lines: Type.String({ default: '', description: 'Lines whose results are POSTed, comma-separated; empty: every line.' }),
    webhook_verdicts: Type.String({
      default: 'ok,ng,check',
      pattern: '^\\s*(ok|ng|check)\\s*(,\\s*(ok|ng|check)\\s*)*$',
      description: 'Verdicts of the results that are POSTed, comma-separated (`ng`: NG only).',
    }),
    webhook_timeout_ms: Type.Integer({
      default: 5000,
      minimum: 100,
      maximum: 600_000,
      description: "Time a webhook receiver has to answer (a delivery's claim lasts this + 5 s).",
    }),
    webhook_max_attempts: Type.Integer({
      default: 10,
      minimum: 1,
      maximum: 1000,
      description: 'Attempts per delivery before it becomes a dead letter (GET /v1/outputs/webhook/dead-letters, replayable).',
    }),
    webhook_backoff_ms: Type.Integer({
      default: 1000,
      minimum: 1,
      description: 'First retry delay of a failed delivery; doubles per attempt, with jitter; while every receiver is away, one probe at a time.',
    }),
    webhook_backoff_max_ms: Type.Integer({
      default: 300_000,
      minimum: 1,
      description: 'Longest retry delay of a failed delivery, also the longest Retry-After honoured.',
    }),
    webhook_concurrency: Type.Integer({ default: 4, minimum: 1, maximum: 256, description: 'Deliveries in flight at once (all URLs together).' }),
    webhook_outbox_max: Type.Integer({
      default: 10_000,
      minimum: 1,
      maximum: 10_000_000,
      description: 'Deliveries waiting (in the result store) beyond which the oldest are dropped and counted.',
    }),
    opcua: Type.Boolean({ default: false, description: 'Run the OPC UA server output (an object per line, trigger/acknowledge handshake).' }),
    opcua_port: Type.Integer({ default: 4840, minimum: 0, maximum: 65535, description: 'OPC UA server port (0 picks a free one).' }),
    opcua_security: Type.String({
      default: 'none,basic256sha256',
      pattern: '^\\s*(none|basic256sha256)\\s*(,\\s*(none|basic256sha256)\\s*)*$',
      description: 'Security policies offered (`none`, `basic256sha256` with Sign and SignAndEncrypt), comma-separated.',
    }),
    opcua_username: Type.String({ default: '', description: 'User name OPC UA clients log in with; empty: anonymous sessions are allowed.' }),
    opcua_password: Type.String({ default: '', description: 'Password of opcua_username.' }),
    opcua_lines: Type.String({ default: '', description: 'Lines given an object from the start, comma-separated; others get one with their first event.' }),
    opcua_max_sessions: Type.Integer({ default: 50, minimum: 1, maximum: 10_000, description: 'OPC UA sessions open at once.' }),
    modbus: Type.Boolean({ default: false, description: 'Run the Modbus TCP server output (bits and registers per line, trigger/acknowledge handshake).' }),
    modbus_host: Type.String({ default: '0.0.0.0', minLength: 1, description: 'Modbus TCP listen address.' }),
    modbus_port: Type.Integer({ default: 5020, minimum: 0, maximum: 65535, description: 'Modbus TCP port (502 needs privileges; 0 picks a free one).' }),
    modbus_lines: Type.String({
      default: '',
      description: 'Lines in register-map order, comma-separated: line k (from 0) has the block at k × 100 (docs/outputs/modbus.md). Needed when modbus is on.',
    }),
    output_result_buffer: Type.Integer({
      default: 8,
      minimum: 1,
      maximum: 1024,
      description: 'Results per line an OPC UA or Modbus handshake holds until the PLC acknowledges them; beyond it the oldest are dropped and counted.',
    }),
    output_dead_letters_max: Type.Integer({
      default: 1000,
      minimum: 0,
      maximum: 1_000_000,
      description: 'Dead letters kept per output (oldest deleted first).',
    }),
    // pulled sources (issue 21): cameras and folders the server reads itself; see docs/sources.md
    sources: Type.String({
      default: '',
      description:
        'Pulled sources (`sightline serve` only): a JSON file (`sources.json`, an array) or `name=kind:target[,key=value…]` entries separated by `;`, e.g. `cam-1=folder:/srv/in,line=line-1; top=snapshot:http://10.0.0.7/snap.jpg,interval_ms=500` (kinds `folder`, `snapshot`, `mjpeg`, `ffmpeg`: docs/sources.md); empty: none.',
    }),
    source_poll_interval_ms: Type.Integer({
      default: 1000,
      minimum: 50,
      maximum: 3_600_000,
      description: 'How often a hot folder is scanned; a file is read once its size and mtime held still for one interval.',
    }),
    source_snapshot_interval_ms: Type.Integer({
      default: 1000,
      minimum: 50,
      maximum: 3_600_000,
      description: "Time between two fetches of a snapshot URL (a source's own `interval_ms` wins).",
    }),
    source_timeout_ms: Type.Integer({ default: 5000, minimum: 100, maximum: 600_000, description: 'Time a camera has to answer one fetch.' }),
    source_backoff_ms: Type.Integer({
      default: 1000,
      minimum: 10,
      maximum: 600_000,
      description: 'First retry delay of a source that cannot be read; doubles per failure (with jitter) up to source_backoff_max_ms.',
    }),
    source_ffmpeg_path: Type.String({
      default: 'ffmpeg',
      minLength: 1,
      description: 'The ffmpeg that decodes `ffmpeg` sources (RTSP, HTTP video, video files), one child process per source.',
    }),
    source_backoff_max_ms: Type.Integer({
      default: 30_000,
      minimum: 10,
      maximum: 3_600_000,
      description: 'Longest retry delay of a source that cannot be read.',
    }),
    models_dir: Type.String({ default: './models', minLength: 1, description: 'The model repository.' }),
    default_model: Type.String({
      default: '',
      description: 'Model used when a request names none (`name` or `name:version`); empty picks the only model.',
    }),
    model_control: Type.Union([Type.Literal('poll'), Type.Literal('explicit'), Type.Literal('none')], {
      default: 'poll',
      description:
        '`poll`: watch models_dir and load a new version once its files are complete (plus the load/unload/traffic API); `explicit`: only the API changes what is loaded; `none`: what is there at start, no API (docs/models.md#model-control).',
    }),
    model_poll_interval_ms: Type.Integer({
      default: 2000,
      minimum: 100,
      maximum: 3_600_000,
      description: 'How often `poll` scans models_dir; a new version loads once its files held still for one interval.',
    }),
    model_sync_interval_ms: Type.Integer({
      default: 1000,
      minimum: 100,
      maximum: 60_000,
      description: 'How often each process reads the model control table (loads, unloads, traffic splits made through any process).',
    }),
    model_version_policy: Type.String({
      default: 'latest:1',
      description:
        'Versions loaded per model: `all`, `latest:N` or `specific:V1,V2`, then per-model overrides, e.g. `latest:1; mirror=all; defects=specific:1,2`.',
    }),
    model_drain_timeout_ms: Type.Integer({
      default: 30_000,
      minimum: 0,
      maximum: 600_000,
      description: 'How long a version leaving service waits for its in-flight requests before its instances are closed anyway.',
    }),
    log_level: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info', description: 'pino log level.' },
    ),
    log_format: Type.Union([Type.Literal('auto'), Type.Literal('json'), Type.Literal('pretty')], {
      default: 'auto',
      description:
        '`json`: one JSON object a line (for log pipelines and `sightline logs analyze`); `pretty`: coloured lines for people (pino-pretty); `auto`: pretty when stdout is a terminal, else JSON.',
    }),
    body_limit_bytes: Type.Integer({
      default: 20 * 1024 * 1024,
      minimum: 1024,
      description: 'Largest accepted request body (raw image or multipart), in bytes.',
    }),
    quality_overrides: Type.String({
      default: '',
      pattern: QUALITY_OVERRIDES_PATTERN,
      description:
        "Per-line changes to the models' image-quality envelopes, bound by bound: `line-1=sharpness_min:20,brightness_max:230; line-4=off` (measures sharpness, brightness, contrast, dark_fraction, bright_fraction; `off`: no gate on that line).",
    }),
    verdict_rules_file: Type.String({
      default: '',
      description:
        "A JSON file of per-line and per-camera verdict settings: `mm_per_px`, named polygons (include/exclude regions) and changes to the models' verdict rules (docs/models.md#verdict-rules). Checked at start (a bad file stops it) and reloaded when it changes (a bad change is refused); empty: the rules of model.json alone.",
    }),
    max_image_pixels: Type.Integer({
      default: 40_000_000,
      minimum: 1,
      description: 'Largest accepted image, width × height, checked from the header before decoding.',
    }),
    max_detections_limit: Type.Integer({
      default: 1000,
      minimum: 1,
      description: 'Upper bound for the per-request `max_det` override.',
    }),
    instances: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 64,
      description: 'Model instances (worker threads with a session each) per model; 0: cores ÷ intra-op threads.',
    }),
    intra_op_threads: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 256,
      description: 'ONNX Runtime intra-op threads per instance; 0: cores ÷ instances (1 when both are 0).',
    }),
    inter_op_threads: Type.Integer({
      default: 1,
      minimum: 1,
      maximum: 256,
      description:
        'ONNX Runtime inter-op threads per model instance (used only by parallel execution; sessions run sequentially, so this changes nothing measurable).',
    }),
    lone_request_threads: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 256,
      description:
        "Intra-op threads of an extra session in the first instance that runs a request arriving at an idle model alone, so one part uses every core (docs/batching.md#thread-layout); 0: the layout's cores when an instance has fewer threads than that, 1: off.",
    }),
    lone_request_spinning: Type.Boolean({
      default: true,
      description:
        "Whether the lone-request session's threads busy-wait between operators (ONNX Runtime's default). On by default: it runs only while nothing else does, so spinning takes no core from other work, and a lone part at 640 finishes about 2 ms sooner (docs/batching.md#thread-layout).",
    }),
    intra_op_spinning: Type.Boolean({
      default: false,
      description:
        "Whether ONNX Runtime's intra-op threads busy-wait between operators. Off by default: spinning threads fight the image decoder and the other instances for the cores (measured: docs/batching.md#thread-layout).",
    }),
    decode_concurrency: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 256,
      description:
        'Images decoded at once, across all models (waiting for a slot counts in timings_ms.decode); 0: one per core. More add no throughput, only memory (docs/batching.md#decoding).',
    }),
    native_jpeg_decoder: Type.Union([Type.Literal('exact'), Type.Literal('scaled'), Type.Literal('off')], {
      default: 'exact',
      description:
        "Plain JPEGs the native libjpeg-turbo decoder (built at install time) takes: exact, every one at or above the model input's letterboxed size, with sharp's pixels exactly (sharp's shrink-on-load, then libvips' linear reduce); scaled, as exact, but a frame 2, 4 or 8 times that size is decoded at DCT scale with no resampling (faster, slightly different pixels: held-out mAP50-95 -0.004 to -0.006); off, none. The rest (smaller images, EXIF, ICC profiles, CMYK), and everything where it is not built, sharp decodes (docs/batching.md#decoding).",
    }),
    heap_growing_percent: Type.Integer({
      default: 200,
      minimum: 0,
      maximum: 1000,
      description:
        "How far V8 lets the JavaScript heap grow past what its last full collection kept before the next one, in percent (V8's --heap-growing-percent); 0: V8's own choice, which on a busy server left a full collection every 300-400 ms (2-3 ms of CPU per request at 320, c=16). 200 costs about 20 MiB (docs/batching.md#memory).",
    }),
    max_batch_size: Type.Integer({
      default: 1,
      minimum: 1,
      maximum: 256,
      description: 'Largest batch per inference; raise it on GPUs (on CPUs batches do not add throughput). A fixed batch axis wins.',
    }),
    max_queue_delay_ms: Type.Number({
      default: 2,
      minimum: 0,
      maximum: 1000,
      description: 'Longest wait for a batch to fill while more requests are being decoded.',
    }),
    max_queue: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 100_000,
      description: 'Requests admitted per model (queued or decoding) before new ones get 503 OVERLOADED; 0: 8 × instances.',
    }),
    request_timeout_ms: Type.Integer({
      default: 30_000,
      minimum: 1,
      maximum: 3_600_000,
      description: 'Deadline of a request without X-Request-Timeout-Ms; past it the request gets 504 DEADLINE_EXCEEDED.',
    }),
    max_event_loop_delay_ms: Type.Integer({
      default: 1000,
      minimum: 0,
      description: 'Event-loop delay above which inference requests get 503 OVERLOADED (0: off).',
    }),
    max_rss_bytes: Type.Integer({
      default: 0,
      minimum: 0,
      description: "Resident memory above which inference requests get 503 OVERLOADED; 0: 75% of the machine's memory.",
    }),
    inference_stall_ms: Type.Integer({
      default: 10_000,
      minimum: 0,
      maximum: 3_600_000,
      description:
        "An inference running longer than this or 20 × the model's p99, whichever is larger, marks its instance stuck: its requests get 503 INFERENCE_STALLED and the instance is replaced (0: off).",
    }),
    warmup_runs: Type.Integer({
      default: 1,
      minimum: 1,
      maximum: 100,
      description: 'Warm-up inferences a model runs before it reports READY.',
    }),
    shutdown_timeout_ms: Type.Integer({
      default: 10_000,
      minimum: 0,
      description: 'On SIGTERM, how long in-flight requests may take before the process exits anyway.',
    }),
    shutdown_drain_ms: Type.Integer({
      default: 2000,
      minimum: 0,
      description:
        'On SIGTERM, how long idle keep-alive connections get to carry one last request (answered with Connection: close) or be closed by their clients before the rest are cut; at most a quarter of shutdown_timeout_ms.',
    }),
  },
  { additionalProperties: false },
);

export type Config = Static<typeof ConfigSchema>;

/** Config keys in schema order. */
export const CONFIG_KEYS = Object.keys(ConfigSchema.properties) as (keyof Config)[];
