import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { OpenAPIV3 } from 'openapi-types';
import { RATE_LIMIT_EXEMPT } from '../src/auth/index.js';
import { ERROR_CODES, Errors, type ErrorCode } from '../src/errors.js';
import type { RouteAccess } from '../src/auth/index.js';
import { IMAGE_CONTENT_TYPES } from '../src/server/app.js';
import { IMAGE_BODY_TYPES } from '../src/server/api-schemas.js';
import { isDashboardRoute } from '../src/server/web.js';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';

type Method = 'get' | 'head' | 'post' | 'put' | 'patch' | 'delete' | 'options';
const METHODS: Method[] = ['get', 'head', 'post', 'put', 'patch', 'delete', 'options'];
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

/** The reference page, its assets and its copy of the document, and the dashboard (src/server/web.ts): served, not documented. */
const isDocsRoute = (url: string) => url === '/openapi.json' || url === '/docs' || url.startsWith('/docs/') || isDashboardRoute(url);
/** Codes given with another status than their own: tus's answers (docs/uploads.md) and a stream GET without upgrade. */
const OTHER_STATUS: Partial<Record<ErrorCode, number[]>> = { UPLOAD_NOT_FOUND: [410], INVALID_UPLOAD: [403, 412, 415], INVALID_REQUEST: [426] };

/** The codes a response description names: `CODE: why; CODE, CODE: why`. */
const codesIn = (description: string) =>
  description.split('; ').flatMap((part) => /^(?:or )?([A-Z][A-Z_]+(?:, [A-Z][A-Z_]+)*): /.exec(part)?.[1]?.split(', ') ?? []);

/** `/v1/jobs/:id` → `/v1/jobs/{id}`. */
const toTemplate = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

async function withApp(overrides: Parameters<typeof startApp>[0], run: (app: FastifyInstance) => Promise<void>): Promise<void> {
  const models = tempDir('sightline-openapi-');
  const app = await startApp({ models_dir: models.dir, ...overrides }, { wait: false });
  try {
    await run(app);
  } finally {
    await app.close();
    models.cleanup();
  }
}

async function documentOf(app: FastifyInstance): Promise<OpenAPIV3.Document> {
  const res = await app.inject({ url: '/openapi.json' });
  assert.equal(res.statusCode, 200, res.body);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  return res.json() as OpenAPIV3.Document;
}

/** Follows a local `#/components/…` reference. */
function resolve<T>(doc: OpenAPIV3.Document, value: T | OpenAPIV3.ReferenceObject): T {
  if (!value || typeof value !== 'object' || !('$ref' in value)) return value as T;
  const parts = value.$ref.replace(/^#\//, '').split('/');
  const target = parts.reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], doc);
  assert.ok(target, `${value.$ref} resolves`);
  return target as T;
}

test('a test walks every registered route and finds it in /openapi.json with its documented error statuses', async () => {
  await withApp({ auth: 'on' }, async (app) => {
    const doc = await documentOf(app);
    const routes = app.routeAccess;
    const gets = new Set(routes.filter((r) => r.method === 'GET').map((r) => r.url));
    let checked = 0;
    for (const route of routes) {
      if (isDocsRoute(route.url)) continue;
      const path = toTemplate(route.url);
      const method = route.method.toLowerCase() as Method;
      const item = doc.paths[path];
      // Fastify adds a HEAD route to every GET; only HEAD routes of their own (tus) are operations.
      if (method === 'head' && gets.has(route.url) && item?.head === undefined) continue;
      const where = `${route.method} ${route.url}`;
      assert.ok(item, `${where}: path ${path} is in the document`);
      const op = item[method];
      assert.ok(op, `${where} is in the document`);
      assert.ok(op.summary, `${where} has a summary`);
      assert.ok(op.tags?.length, `${where} has a tag`);
      assert.deepEqual((op as unknown as { 'x-sightline-role': RouteAccess })['x-sightline-role'], route.role, `${where}: role`);

      // Every route validates its query (unknown parameters are refused), so every route can answer 400.
      const expected: Record<string, ErrorCode> = { 400: 'INVALID_REQUEST', 500: 'INTERNAL_ERROR', 503: 'SHUTTING_DOWN' };
      if (route.role !== 'public') Object.assign(expected, { 401: 'UNAUTHORIZED', 403: 'FORBIDDEN' });
      if (!RATE_LIMIT_EXEMPT.has(route.url)) expected[429] = 'RATE_LIMITED';
      for (const [status, code] of Object.entries(expected)) {
        const response = op.responses[status] as OpenAPIV3.ResponseObject | undefined;
        assert.ok(response, `${where} documents ${status}`);
        assert.ok(codesIn(response.description).includes(code), `${where} ${status} names ${code}: ${response.description}`);
        const schema = response.content?.['application/json']?.schema as OpenAPIV3.SchemaObject | undefined;
        const bodies = schema?.anyOf ?? [schema];
        assert.ok(
          bodies.some((s) => (s as OpenAPIV3.ReferenceObject | undefined)?.$ref === '#/components/schemas/ErrorResponse'),
          `${where} ${status} has the error body`,
        );
      }
      assert.ok(
        Object.keys(op.responses).some((s) => /^[123]\d\d$/.test(s)),
        `${where} documents its success`,
      );
      for (const [status, response] of Object.entries(op.responses)) {
        if (Number(status) < 400) continue;
        const codes = codesIn((response as OpenAPIV3.ResponseObject).description);
        assert.ok(codes.length > 0, `${where} ${status} names its codes`);
        for (const code of codes) {
          assert.ok((ERROR_CODES as string[]).includes(code), `${where} ${status}: ${code} is a code of src/errors.ts`);
          const registered = new Errors[code as ErrorCode]().statusCode;
          assert.ok(
            registered === Number(status) || OTHER_STATUS[code as ErrorCode]?.includes(Number(status)),
            `${where}: ${code} is ${registered}, documented as ${status}`,
          );
        }
      }
      if (route.role === 'public') assert.deepEqual(op.security, [], `${where} is public`);
      else assert.notDeepEqual(op.security, [], `${where} needs credentials`);
      for (const [, name] of path.matchAll(/\{([^}]+)\}/g)) {
        const params = (op.parameters ?? []).map((p) => resolve<OpenAPIV3.ParameterObject>(doc, p));
        assert.ok(
          params.some((p) => p.in === 'path' && p.name === name && p.required),
          `${where}: path parameter ${name}`,
        );
      }
      checked++;
    }
    assert.ok(checked >= 24, `${checked} operations checked`);
    // tus HEAD is an operation of its own (not Fastify's HEAD for a GET).
    assert.ok(doc.paths['/v1/uploads/{id}']?.head?.responses['200'], 'HEAD /v1/uploads/{id}');
    // And the document holds nothing that is not a route.
    const registered = new Set(routes.map((r) => `${r.method.toLowerCase()} ${toTemplate(r.url)}`));
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of METHODS) if (item?.[method]) assert.ok(registered.has(`${method} ${path}`), `${method} ${path} is a route`);
    }
  });
});

test('the document is OpenAPI 3.0: info, tags, security schemes, and every response with a description', async () => {
  await withApp({}, async (app) => {
    const doc = await documentOf(app);
    assert.match(doc.openapi, /^3\.0\.\d+$/);
    assert.equal(doc.info.title, 'Sightline');
    assert.equal(doc.info.version, version);
    // Relative to wherever the server is reached: no absolute server URL.
    for (const server of doc.servers ?? []) assert.doesNotMatch(server.url, /^[a-z]+:/i);
    const schemes = doc.components?.securitySchemes ?? {};
    const scheme = (name: string) => {
      const { description: _, ...rest } = resolve<OpenAPIV3.SecuritySchemeObject>(doc, schemes[name]!);
      return rest;
    };
    assert.deepEqual(scheme('bearer'), { type: 'http', scheme: 'bearer' });
    assert.deepEqual(scheme('apiKey'), { type: 'apiKey', in: 'header', name: 'X-API-Key' });
    assert.deepEqual(scheme('accessToken'), { type: 'apiKey', in: 'query', name: 'access_token' });
    assert.deepEqual(doc.paths['/v1/stream']?.get?.security, [{ bearer: [] }, { apiKey: [] }, { accessToken: [] }]);
    assert.ok(doc.components?.schemas?.ErrorResponse, 'one shared error body');

    const tags = new Set((doc.tags ?? []).map((t) => t.name));
    const operationIds = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths)) {
      assert.match(path, /^\//);
      for (const method of METHODS) {
        const op = item?.[method];
        if (!op) continue;
        const where = `${method} ${path}`;
        for (const tag of op.tags ?? []) assert.ok(tags.has(tag), `${where}: tag ${tag} is declared`);
        if (op.operationId) {
          assert.ok(!operationIds.has(op.operationId), `${where}: operationId is unique`);
          operationIds.add(op.operationId);
        }
        for (const security of op.security ?? []) for (const name of Object.keys(security)) assert.ok(schemes[name], `${where}: scheme ${name}`);
        for (const p of op.parameters ?? []) {
          const param = resolve<OpenAPIV3.ParameterObject>(doc, p);
          assert.ok(param.name && ['query', 'header', 'path', 'cookie'].includes(param.in) && param.schema, `${where}: parameter ${param.name}`);
        }
        assert.ok(Object.keys(op.responses).length > 0, `${where} has responses`);
        for (const [status, r] of Object.entries(op.responses)) {
          assert.match(status, /^([1-5]\d\d|default)$/, `${where}: status ${status}`);
          const response = resolve<OpenAPIV3.ResponseObject>(doc, r);
          assert.ok(response.description && response.description !== 'Default Response', `${where} ${status} has a description`);
          for (const media of Object.values(response.content ?? {})) if (media.schema) resolve(doc, media.schema);
        }
      }
    }
    // Non-JSON routes say what they carry.
    const detect = doc.paths['/v1/detect']?.post;
    assert.deepEqual(
      Object.keys(detect?.requestBody ? resolve<OpenAPIV3.RequestBodyObject>(doc, detect.requestBody).content : {}).sort(),
      [...IMAGE_BODY_TYPES].sort(),
    );
    assert.deepEqual(Object.keys((doc.paths['/metrics']?.get?.responses['200'] as OpenAPIV3.ResponseObject | undefined)?.content ?? {}), [
      'text/plain; version=0.0.4; charset=utf-8',
    ]);
    assert.ok(doc.paths['/v1/stream']?.get?.responses['101'], 'the WebSocket upgrade');
    assert.ok(doc.paths['/v1/stream']?.get?.responses['426'], 'a GET without upgrade');
  });
});

test('the image body types documented are the ones the server parses', () => {
  assert.deepEqual([...IMAGE_BODY_TYPES].sort(), [...IMAGE_CONTENT_TYPES, 'multipart/form-data'].sort());
});

test('/docs and /openapi.json are public, and the reference loads only from the server itself', async () => {
  await withApp({ auth: 'on' }, async (app) => {
    assert.equal((await app.inject({ url: '/v1/models' })).statusCode, 401, 'auth is on');
    for (const route of app.routeAccess.filter((r) => isDocsRoute(r.url))) assert.equal(route.role, 'public', `${route.method} ${route.url}`);

    const page = await app.inject({ url: '/docs' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.doesNotMatch(page.body, /(https?:)?\/\/[a-z0-9]/i, 'no URL of another host in the page');
    // The browser is told so as well: scripts, styles, fonts, images and requests from this origin only.
    const csp = String(page.headers['content-security-policy']);
    for (const directive of ['default-src', 'script-src', 'style-src', 'img-src', 'font-src', 'connect-src']) {
      const sources =
        csp
          .split(';')
          .find((d) => d.trim().startsWith(`${directive} `))
          ?.trim()
          .split(/\s+/)
          .slice(1) ?? [];
      assert.ok(sources.length > 0, `${directive} is set`);
      for (const source of sources) assert.ok(["'self'", "'unsafe-inline'", "'none'", 'data:', 'blob:'].includes(source), `${directive} ${source}`);
    }

    const assets = [...page.body.matchAll(/\b(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
    assert.ok(assets.length >= 4, assets.join(' '));
    const kinds: Record<string, RegExp> = { '.css': /^text\/css/, '.js': /^application\/javascript/, '.png': /^image\/png/ };
    for (const asset of assets) {
      assert.match(asset, /^\/docs\/static\/[\w.-]+$/, 'served from /docs on this server');
      const res = await app.inject({ url: asset });
      assert.equal(res.statusCode, 200, asset);
      const ext = asset.slice(asset.lastIndexOf('.'));
      assert.match(String(res.headers['content-type']), kinds[ext] ?? /./, asset);
      if (ext === '.css') {
        assert.doesNotMatch(res.body, /@import/, `${asset} imports nothing`);
        for (const [, url] of res.body.matchAll(/url\(\s*["']?([^"')]*)/g)) assert.match(url!, /^(data:|#|[^:]*$)/, `${asset}: url(${url!.slice(0, 40)})`);
      }
    }

    // The page's script asks for the document here (./json) and never for the online validator.
    const init = (await app.inject({ url: '/docs/static/swagger-initializer.js' })).body.replace(/^\s*\/\/.*$/gm, '');
    assert.doesNotMatch(init, /https?:\/\//, 'no absolute URL in the initializer');
    assert.match(init, /validatorUrl: null/);
    assert.match(init, /resolveUrl\('\.\/json'\)/);
    assert.deepEqual((await app.inject({ url: '/docs/json' })).json(), await documentOf(app));
  });
});

test('response schemas document answers without shaping them: no field is dropped or coerced', async () => {
  // What fast-json-stringify would do with a response schema: drop `extra`, round `n`.
  await withApp({}, async (app) => {
    assert.ok(app.serializerCompiler, 'the app sets its serializer compiler');
    const serialize = app.serializerCompiler({
      schema: { type: 'object', properties: { n: { type: 'integer' } } },
      method: 'GET',
      url: '/',
      httpStatus: '200',
    });
    assert.equal(serialize({ n: 1.5, extra: true }), '{"n":1.5,"extra":true}');
  });
  // A real answer with more than its documented schema names: a done job's result is the stored
  // one (source, created_at), documented as the wire result.
  const models = tempDir('sightline-openapi-models-');
  writeDecoderModels(models.dir);
  const app = await startApp({ models_dir: models.dir, default_model: 'v8' });
  try {
    const res = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'image/jpeg' }, payload: await solidImage(64, 48, 'jpeg') });
    assert.equal(res.statusCode, 202, res.body);
    const id = res.json().job_id as string;
    const end = Date.now() + 10_000;
    let job: { state: string; result?: Record<string, unknown> } = { state: 'queued' };
    while (job.state !== 'done' && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      job = (await app.inject(`/v1/jobs/${id}`)).json();
    }
    assert.equal(job.state, 'done');
    assert.equal(job.result?.source, 'job');
    assert.equal(typeof job.result?.created_at, 'string');
  } finally {
    await app.close();
    models.cleanup();
  }
});
