import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  AttributeIds,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  UserTokenType,
  type ClientSession,
  type UserIdentityInfo,
} from 'node-opcua';
import { cycle, request, serverChild } from '../../bench/opcua-connect-cycles.js';
import type { OpcuaOutput } from '../../src/outputs/opcua/index.js';
import { startApp, tempDir } from '../helpers/fixtures.js';
import { waitFor } from '../helpers/cli-process.js';

const USER = { type: UserTokenType.UserName, userName: 'plc', password: 'line-secret-1' } as const;

function secureClient(t: TestContext, pki: string, securityMode: MessageSecurityMode): OPCUAClient {
  const client = OPCUAClient.create({
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    securityMode,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    // The test trusts the server's self-signed certificate; the server trusts the client only once its certificate is moved to trusted/.
    clientCertificateManager: new OPCUACertificateManager({ rootFolder: pki, automaticallyAcceptUnknownCertificate: true }),
  });
  t.after(() => client.disconnect());
  return client;
}

async function session(client: OPCUAClient, endpoint: string, user: UserIdentityInfo | undefined): Promise<ClientSession> {
  await client.connect(endpoint);
  return client.createSession(user);
}

test('OPC UA security: Basic256Sha256 SignAndEncrypt with username/password once the client certificate is trusted; a wrong password and anonymous are refused', {
  timeout: 80_000,
}, async (t) => {
  const { dir, cleanup } = tempDir('sightline-opcua-sec-');
  t.after(cleanup);
  const dataDir = join(dir, 'data');
  const app = await startApp({
    opcua: true,
    opcua_port: 0,
    data_dir: dataDir,
    opcua_lines: 'line-s',
    opcua_security: 'basic256sha256',
    opcua_username: USER.userName,
    opcua_password: USER.password,
  });
  t.after(() => app.close());
  const output = app.sightline.outputs.get('opcua') as OpcuaOutput;
  const endpoint = output.endpointUrl;
  const pki = join(dataDir, 'opcua-pki');

  // Only the signed endpoints take sessions (the None one left is node-opcua's discovery-only endpoint).
  const probe = OPCUAClient.create({
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    clientCertificateManager: new OPCUACertificateManager({ rootFolder: join(dir, 'client-pki'), automaticallyAcceptUnknownCertificate: true }),
  });
  await probe.connect(endpoint);
  const endpoints = await probe.getEndpoints();
  await probe.disconnect();
  const modes = endpoints.filter((e) => e.securityPolicyUri === SecurityPolicy.Basic256Sha256).map((e) => MessageSecurityMode[e.securityMode]);
  assert.deepEqual(modes.sort(), ['Sign', 'SignAndEncrypt'].sort());
  for (const e of endpoints) {
    assert.ok(!e.userIdentityTokens?.some((u) => u.tokenType === UserTokenType.Anonymous), 'no endpoint offers anonymous sessions when a user is set');
  }

  // An unknown client certificate is refused and lands in rejected/; moved to trusted/certs, it is let in.
  const client = secureClient(t, join(dir, 'client-pki'), MessageSecurityMode.SignAndEncrypt);
  await assert.rejects(session(client, endpoint, USER), 'an untrusted client certificate is refused');
  await client.disconnect();
  const rejected = await waitFor(
    () => readdirSync(join(pki, 'rejected')).filter((f) => f.endsWith('.pem') || f.endsWith('.der')),
    'the rejected client certificate',
    5000,
  );
  assert.equal(rejected.length, 1);
  renameSync(join(pki, 'rejected', rejected[0]!), join(pki, 'trusted', 'certs', rejected[0]!));

  const trusted = await waitFor(
    async () => {
      const c = secureClient(t, join(dir, 'client-pki'), MessageSecurityMode.SignAndEncrypt);
      return session(c, endpoint, USER).catch(async () => {
        await c.disconnect();
        return undefined;
      });
    },
    'a session once the certificate is trusted',
    20_000,
  );
  const value = await trusted.read({ nodeId: `ns=${output.namespaceIndex};s=line-s.TriggerReady`, attributeId: AttributeIds.Value });
  assert.equal(value.statusCode.name, 'Good');
  assert.equal(value.value.value, true);
  await trusted.close();

  // Sign (not encrypted) is offered too.
  const signed = await session(secureClient(t, join(dir, 'client-pki'), MessageSecurityMode.Sign), endpoint, USER);
  assert.equal((await signed.read({ nodeId: `ns=${output.namespaceIndex};s=line-s.LastVerdict`, attributeId: AttributeIds.Value })).statusCode.name, 'Good');
  await signed.close();

  await assert.rejects(
    session(secureClient(t, join(dir, 'client-pki'), MessageSecurityMode.SignAndEncrypt), endpoint, { ...USER, password: 'wrong' }),
    /BadUserAccessDenied|BadIdentityTokenRejected|BadIdentityTokenInvalid/,
    'a wrong password is refused',
  );
  await assert.rejects(
    session(secureClient(t, join(dir, 'client-pki'), MessageSecurityMode.SignAndEncrypt), endpoint, undefined),
    // The server offers no anonymous token policy (asserted on the endpoints above), so node-opcua's client stops before sending one.
    /ANONYMOUS user token policy|BadIdentityTokenInvalid|BadIdentityTokenRejected|BadUserAccessDenied/,
    'anonymous is refused',
  );
  assert.match(output.health().detail, /listening on opc\.tcp:/);
});

test('OPC UA heap: 100 connect/createSession/closeSession/disconnect cycles leave the server heap flat (short form of bench/opcua-connect-cycles.ts)', {
  timeout: 85_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-opcua-heap-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { child, ready } = await serverChild(join(dir, 'data'));
  t.after(async () => {
    child.send({ type: 'stop' });
    await new Promise((r) => child.once('exit', r));
  });
  const certificates = new OPCUACertificateManager({ rootFolder: join(dir, 'client-pki'), automaticallyAcceptUnknownCertificate: true });
  t.after(() => certificates.dispose());
  const nodeId = `ns=${ready.ns};s=line-1.LastVerdict`;
  const heap = async () => {
    const answer = await request(child, { type: 'heap' });
    assert.equal(answer.type, 'heap');
    return answer.type === 'heap' ? answer : assert.fail();
  };
  // Warm-up: the first cycles fill caches once (the bench shows ~5 MiB over the first 250, then flat).
  for (let i = 0; i < 30; i++) await cycle(ready.endpoint, nodeId, certificates);
  const before = await heap();
  for (let i = 0; i < 100; i++) await cycle(ready.endpoint, nodeId, certificates);
  const after = await heap();
  assert.equal(after.sessions, 0, 'every session was closed on the server');
  const growth = after.heapUsed - before.heapUsed;
  t.diagnostic(
    `server heapUsed after GC: ${(before.heapUsed / 2 ** 20).toFixed(2)} MiB after 30 cycles, ${(after.heapUsed / 2 ** 20).toFixed(2)} MiB after 130`,
  );
  // 100 leaked sessions (each with its diagnostics nodes and channel) would be several MiB; the bench measures ~0.2 KiB per cycle.
  assert.ok(growth < 3 * 2 ** 20, `server heap grew ${(growth / 2 ** 20).toFixed(2)} MiB over 100 cycles`);
});
