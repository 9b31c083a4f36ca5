// The REST surface against a real API server on loopback and a real Redis:
// validation (every issue), auth, error mapping, OpenAPI, Bull Board, volumes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { request as undiciRequest } from 'undici';
import { HostRegistry, Orchestrator, QUEUE_PREFIX } from '@monocore/engine';
import { buildApi, startApi, type RunningApi } from '@monocore/api';
import { apiTestRedisUrl, flushDb, TOKEN } from './api-test-env.js';
import { TEST_REDIS_DBS } from '../support/env.js';

const REDIS_URL = apiTestRedisUrl(TEST_REDIS_DBS['api/api-surface']);
let api: RunningApi;
let redis: Redis;
let probeQueue: Queue;
let roots: string;
const auth = { authorization: `Bearer ${TOKEN}` };

async function call(method: string, path: string, opts: { body?: unknown; raw?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...auth, ...opts.headers };
  let body: string | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] = 'application/json';
  } else if (opts.raw !== undefined) headers['content-type'] ??= 'application/json';
  const res = await fetch(`${api.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json: json as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

before(async () => {
  await flushDb(REDIS_URL);
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  roots = mkdtempSync(join(tmpdir(), 'mc-api-roots-'));
  mkdirSync(join(roots, 'allowed', 'data'), { recursive: true });
  symlinkSync('/etc', join(roots, 'allowed', 'escape'));
  // A queue that exists before the API starts: Bull Board must list it.
  probeQueue = new Queue('api-test-probe', { prefix: QUEUE_PREFIX, connection: redis });
  await probeQueue.waitUntilReady();
  api = await startApi({ redisUrl: REDIS_URL, host: '127.0.0.1', port: 0, token: TOKEN, allowedVolumeRoots: [join(roots, 'allowed')], bodyLimit: 64 * 1024 });
});

after(async () => {
  await api?.close();
  await probeQueue?.close();
  redis?.disconnect();
  rmSync(roots, { recursive: true, force: true });
});

test('POST /up with an invalid config answers 400 MC_CONFIG_INVALID listing every issue with its path', async () => {
  const res = await call('POST', '/up', {
    body: {
      service: [
        { name: 'Web', base: 'busybox', ram: 'lots', depends_on: ['db2'] },
        { name: 'db', base: 'busybox', cpus: 0, colour: 'red' },
      ],
      group: [{ name: 'g1', local_only: 'yes' }],
      extra: 1,
    },
  });
  assert.equal(res.status, 400);
  assert.equal(res.json.code, 'MC_CONFIG_INVALID');
  const paths = (res.json.issues as Array<{ path: string; message: string }>).map((i) => i.path).sort();
  assert.deepEqual(paths, [
    'extra',
    'group[0].local_only',
    'service[0].depends_on[0]',
    'service[0].name',
    'service[0].ram',
    'service[1].colour',
    'service[1].cpus',
  ]);
  assert.deepEqual(res.json.details.issues, res.json.issues, 'issues are also in details');
  for (const issue of res.json.issues as Array<{ message: string }>) assert.ok(issue.message.length > 0);
  assert.match(res.json.message, /7 problems/);
});

test('request-level problems are 400 MC_API_BAD_REQUEST naming the field', async () => {
  const badJson = await call('POST', '/up', { raw: '{"service": [' });
  assert.equal(badJson.status, 400);
  assert.equal(badJson.json.code, 'MC_API_BAD_REQUEST');

  const notObject = await call('POST', '/up', { body: [1, 2] });
  assert.equal(notObject.status, 400);
  assert.equal(notObject.json.code, 'MC_API_BAD_REQUEST');

  const badQuery = await call('GET', '/status?colour=red');
  assert.equal(badQuery.status, 400);
  assert.equal(badQuery.json.code, 'MC_API_BAD_REQUEST');
  assert.match(badQuery.json.message, /colour/);

  const badDown = await call('POST', '/down', { body: { group: 5, servics: ['a'] } });
  assert.equal(badDown.status, 400);
  const downPaths = (badDown.json.issues as Array<{ path: string }>).map((i) => i.path);
  assert.ok(downPaths.some((p) => p.startsWith('body')), downPaths.join());
  assert.match(badDown.json.message, /servics/);

  const badParam = await call('GET', '/services/NOT_A_NAME/logs');
  assert.equal(badParam.status, 400);
  assert.equal(badParam.json.issues[0].path, 'params.name');

  const envelope = await call('POST', '/up', { body: { config: { service: [] }, wait: 'yes' } });
  assert.equal(envelope.status, 400);
  assert.equal(envelope.json.issues[0].path, 'body.wait');
});

test('a body over the limit is 413 MC_API_BODY_TOO_LARGE', async () => {
  const big = { service: [{ name: 'a', base: 'busybox', args: ['x'.repeat(70 * 1024)] }] };
  const res = await call('POST', '/up', { body: big });
  assert.equal(res.status, 413);
  assert.equal(res.json.code, 'MC_API_BODY_TOO_LARGE');
});

test('auth: every route but /healthz needs the bearer token; compared in full', async () => {
  const health = await fetch(`${api.url}/healthz`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'ok', redis: 'up' });

  for (const [method, path] of [
    ['GET', '/status'],
    ['POST', '/up'],
    ['POST', '/down'],
    ['POST', '/remove'],
    ['GET', '/events'],
    ['GET', '/services/web/logs'],
    ['GET', '/deployments/x/wait'],
    ['GET', '/openapi.json'],
    ['GET', '/docs/'],
    ['GET', '/admin/queues'],
    ['GET', '/admin/queues/api/queues'],
    ['GET', '/no/such/route'],
  ] as const) {
    const none = await fetch(`${api.url}${path}`, { method });
    assert.equal(none.status, 401, `${method} ${path} without a token`);
    const body = (await none.json()) as { code: string };
    assert.equal(body.code, 'MC_API_UNAUTHORIZED');
    assert.match(none.headers.get('www-authenticate') ?? '', /Bearer/);
    const wrong = await fetch(`${api.url}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}x` } });
    assert.equal(wrong.status, 401, `${method} ${path} with a wrong token`);
    await wrong.body?.cancel();
  }
  const prefix = await fetch(`${api.url}/status`, { headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}` } });
  assert.equal(prefix.status, 401, 'a prefix of the token is not the token');
  await prefix.body?.cancel();

  const ok = await call('GET', '/status');
  assert.equal(ok.status, 200);
  const notFound = await call('GET', '/no/such/route');
  assert.equal(notFound.status, 404);
  assert.equal(notFound.json.code, 'MC_API_NOT_FOUND');
});

test('web pages stay out: cross-origin requests and rebound Host names are 403 MC_API_FORBIDDEN', async () => {
  const evil = await fetch(`${api.url}/down`, {
    method: 'POST',
    headers: { ...auth, origin: 'http://evil.example', 'content-type': 'application/json' },
    body: '{}',
  });
  assert.equal(evil.status, 403, 'even with the right token (a browser may hold cached credentials)');
  assert.equal(((await evil.json()) as { code: string }).code, 'MC_API_FORBIDDEN');
  const nullOrigin = await fetch(`${api.url}/status`, { headers: { ...auth, origin: 'null' } });
  assert.equal(nullOrigin.status, 403);
  await nullOrigin.body?.cancel();
  const sameOrigin = await fetch(`${api.url}/status`, { headers: { ...auth, origin: api.url } });
  assert.equal(sameOrigin.status, 200, 'the pages the API serves itself may call it');
  await sameOrigin.body?.cancel();

  const port = new URL(api.url).port;
  const rebound = await undiciRequest(`${api.url}/healthz`, { headers: { host: `evil.example:${port}` } });
  assert.equal(rebound.statusCode, 403);
  assert.equal(((await rebound.body.json()) as { code: string }).code, 'MC_API_FORBIDDEN');
  const localhost = await undiciRequest(`${api.url}/healthz`, { headers: { host: `localhost:${port}` } });
  assert.equal(localhost.statusCode, 200);
  await localhost.body.text();
});

test('Bull Board is served behind the token (Bearer or Basic) and lists every queue, including ones created later', async () => {
  const page = await fetch(`${api.url}/admin/queues`, { headers: auth });
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);

  const late = new Queue('pull-api-test-host', { prefix: QUEUE_PREFIX, connection: redis });
  await late.waitUntilReady();
  const basic = `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`;
  const listed = async (): Promise<string[]> => {
    const list = await fetch(`${api.url}/admin/queues/api/queues?activeQueue=api-test-probe&page=1`, { headers: { authorization: basic } });
    assert.equal(list.status, 200);
    return ((await list.json()) as { queues: Array<{ name: string }> }).queues.map((q) => q.name);
  };
  // Each listing triggers discovery, which runs at most every 2 s: poll until the new queue shows.
  let names: string[] = [];
  for (let i = 0; i < 100 && !names.includes('pull-api-test-host'); i++) {
    names = await listed();
    if (!names.includes('pull-api-test-host')) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(names.includes('api-test-probe'), names.join());
  assert.ok(names.includes('pull-api-test-host'), names.join());
  await late.close();
});

test('the OpenAPI document lists every route with its schemas, and /docs serves the UI', async () => {
  const doc = await call('GET', '/openapi.json');
  assert.equal(doc.status, 200);
  assert.equal(doc.json.openapi, '3.1.0');
  const paths = doc.json.paths as Record<string, Record<string, unknown>>;
  const listed = Object.entries(paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)).sort();
  // Every route registered on the server must be in the document, except the docs UI, the
  // document itself and Bull Board (hidden on purpose, with everything below them), and the
  // WebSocket sessions (…/exec/ws: OpenAPI cannot describe them; docs/API.md does).
  const hidden = new Set(['/docs', '/openapi.json', '/admin/queues']);
  const registered: string[] = [];
  const stack: string[] = [];
  for (const line of api.app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^((?:[│ ] {3})*)[├└]── (\S+) \(([^)]+)\)$/.exec(line);
    if (!m) continue;
    const depth = (m[1] ?? '').length / 4;
    stack.length = depth;
    stack.push(m[2] ?? '');
    const path = stack.join('');
    if (hidden.has(stack[0] ?? '') || path.endsWith('/exec/ws')) continue;
    for (const v of (m[3] ?? '').split(', ')) if (v !== 'HEAD') registered.push(`${v} ${path.replace(/:(\w+)/g, '{$1}')}`);
  }
  registered.sort();
  assert.deepEqual(listed, registered, 'every route is documented');
  assert.deepEqual(listed, [
    'DELETE /sandboxes/{id}',
    'GET /deployments/{id}/wait',
    'GET /events',
    'GET /healthz',
    'GET /hosts',
    'GET /metrics',
    'GET /sandboxes',
    'GET /sandboxes/{id}',
    'GET /sandboxes/{id}/files',
    'GET /services/{name}/files',
    'GET /services/{name}/logs',
    'GET /status',
    'POST /down',
    'POST /remove',
    'POST /sandboxes',
    'POST /sandboxes/{id}/exec',
    'POST /sandboxes/{id}/fork',
    'POST /sandboxes/{id}/pause',
    'POST /sandboxes/{id}/resume',
    'POST /services/{name}/exec',
    'POST /up',
    'PUT /sandboxes/{id}/files',
    'PUT /services/{name}/files',
  ]);
  const up = (paths['/up'] as Record<string, any>).post; // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.ok(up.requestBody, '/up documents its body');
  assert.ok(up.responses['400'] && up.responses['202'] && up.responses['401']);
  assert.ok(doc.json.components.schemas.Error, 'the error body is a named component');
  assert.ok(doc.json.components.schemas.ServiceStatus);
  assert.deepEqual(doc.json.security, [{ bearer: [] }]);
  assert.deepEqual((paths['/healthz'] as Record<string, any>).get.security, [], '/healthz needs no token'); // eslint-disable-line @typescript-eslint/no-explicit-any
  const ui = await fetch(`${api.url}/docs/`, { headers: auth });
  assert.equal(ui.status, 200);
  assert.match(await ui.text(), /swagger/i);
});

test('/status shape, errors mapped from the engine, and REST volume roots', async () => {
  // No worker host yet: the engine refuses to place, mapped once to its HTTP status.
  const noHosts = await call('POST', '/up', { body: { service: [{ name: 'web', base: 'busybox' }] } });
  assert.equal(noHosts.status, 503);
  assert.deepEqual(Object.keys(noHosts.json).sort(), ['code', 'details', 'message']);
  assert.equal(noHosts.json.code, 'MC_ORCH_NO_HOSTS');

  // A registered host (no worker consumes its jobs, so services stay pending).
  const hosts = new HostRegistry(redis);
  await hosts.register({ id: 'api-test-host', cpus: 8, ramMib: 16384, backends: ['qemu'] }, 60_000);

  const escape = await call('POST', '/up', {
    body: {
      service: [
        { name: 'web', base: 'busybox', volumes: ['/etc:/host-etc', `${join(roots, 'allowed', 'data')}:/data`] },
        { name: 'db', base: 'busybox', volumes: [`${join(roots, 'allowed', 'escape')}/passwd:/x`] },
      ],
      group: [{ name: 'g', volume: [{ name: 'v', path: '/root' }] }],
    },
  });
  assert.equal(escape.status, 400);
  assert.equal(escape.json.code, 'MC_API_VOLUME_NOT_ALLOWED');
  assert.deepEqual(
    (escape.json.issues as Array<{ path: string }>).map((i) => i.path),
    ['service[0].volumes[0]', 'service[1].volumes[0]', 'group[0].volume[0].path'],
    'host paths outside the roots (and a symlink inside a root pointing out) are each named',
  );

  // Privileged host ports are not for REST callers (MONOCORE_API_PORTS, default 1024-65535).
  const privileged = await call('POST', '/up', {
    body: { service: [{ name: 'web', base: 'busybox', port: '80:8080' }, { name: 'db', base: 'busybox', port: '8081' }] },
  });
  assert.equal(privileged.status, 400, privileged.text);
  assert.equal(privileged.json.code, 'MC_API_PORT_NOT_ALLOWED');
  assert.deepEqual((privileged.json.issues as Array<{ path: string }>).map((i) => i.path), ['service[0].port']);
  assert.match(privileged.json.message as string, /service\[0\]\.port: host port 80 may not be published over REST \(allowed: 1024-65535/);

  // A registry on the cloud metadata address: refused before anything is queued (test/oci/registry-policy.test.ts covers DNS and redirects).
  const metadata = await call('POST', '/up', { body: { service: [{ name: 'web', base: '169.254.169.254/latest/meta-data:x' }] } });
  assert.equal(metadata.status, 400, metadata.text);
  assert.equal(metadata.json.code, 'MC_OCI_REGISTRY_REFUSED');
  assert.deepEqual((metadata.json.issues as Array<{ path: string }>).map((i) => i.path), ['service[0].base']);

  const up = await call('POST', '/up', {
    body: {
      service: [
        { name: 'db', base: 'busybox', command: '/bin/sh', args: ['-c', 'sleep 1000'] },
        { name: 'web', base: 'busybox', depends_on: ['db'], volumes: [`${join(roots, 'allowed', 'data')}:/data`] },
      ],
    },
  });
  assert.equal(up.status, 202, up.text);
  assert.equal(typeof up.json.deploymentId, 'string');
  assert.deepEqual((up.json.plan as Array<{ name: string; level: number }>).map((p) => [p.name, p.level]), [['db', 0], ['web', 1]]);

  const status = await call('GET', '/status');
  assert.equal(status.status, 200);
  const services = status.json.services as Array<Record<string, unknown>>;
  assert.deepEqual(services.map((s) => s.name).sort(), ['db', 'web']);
  for (const s of services) {
    assert.equal(typeof s.status, 'string');
    assert.equal(s.desired, 'running');
    assert.equal(s.host, 'api-test-host');
    assert.equal(typeof s.restarts, 'number');
    assert.equal(typeof s.attempts, 'number');
  }
  const onlyWeb = await call('GET', '/status?services=web');
  assert.deepEqual((onlyWeb.json.services as Array<{ name: string }>).map((s) => s.name), ['web']);
  const none = await call('GET', '/status?status=running');
  assert.deepEqual(none.json.services, [], 'nothing runs without a worker');

  const logs = await call('GET', '/services/nope/logs');
  assert.equal(logs.status, 404);
  assert.equal(logs.json.code, 'MC_ORCH_UNKNOWN_SERVICE');

  // Concurrent identical requests share one read and one encoded body: same bytes, JSON.
  const together = await Promise.all(Array.from({ length: 6 }, () => call('GET', '/status')));
  for (const r of together) {
    assert.equal(r.status, 200);
    assert.match(String(r.headers.get('content-type')), /^application\/json/);
    assert.equal(r.text, together[0]!.text);
  }
  assert.deepEqual(JSON.parse(together[0]!.text), status.json);

  const down = await call('POST', '/down', { body: { services: ['web'] } });
  assert.equal(down.status, 202, down.text);
  assert.deepEqual(down.json.order, ['web']);
  // A read after a write sees it (shared reads never hand out one that started earlier: shared-reads.test.ts).
  const afterDown = await call('GET', '/status');
  assert.deepEqual((afterDown.json.services as Array<{ name: string; desired: string }>).map((x) => [x.name, x.desired]), [['db', 'running'], ['web', 'stopped']]);
});

test('POST /sandboxes with network.allow: a bad entry is 400 naming network.allow[i] and stores nothing; a good list is kept and shown', async () => {
  // A registered host that no worker serves: sandboxes are placed and recorded, then stay creating (wait=false).
  await new HostRegistry(redis).register({ id: 'api-test-host', cpus: 8, ramMib: 16384, backends: ['qemu'] }, 60_000);
  const before = (await call('GET', '/sandboxes')).json.sandboxes as unknown[];

  const bad = await call('POST', '/sandboxes?wait=false', { body: { image: 'busybox', network: { outbound: true, allow: ['pypi.org', '169.254.169.254', 'pypi.org:443'] } } });
  assert.equal(bad.status, 400, bad.text);
  assert.deepEqual(Object.keys(bad.json).sort(), ['code', 'details', 'issues', 'message']);
  assert.equal(bad.json.code, 'MC_VM_EGRESS_ALLOW_INVALID');
  assert.match(bad.json.message as string, /^network\.allow\[1\]: 169\.254\.169\.254 lies in 169\.254\.0\.0\/16/);
  assert.equal(bad.json.details.field, 'network.allow[1]');
  assert.deepEqual((bad.json.issues as Array<{ path: string }>).map((i) => i.path), ['network.allow[1]', 'network.allow[2]'], 'every bad entry is named');

  const noWayOut = await call('POST', '/sandboxes?wait=false', { body: { image: 'busybox', network: { outbound: false, allow: ['pypi.org'] } } });
  assert.equal(noWayOut.status, 400, noWayOut.text);
  assert.equal(noWayOut.json.code, 'MC_VM_EGRESS_ALLOW_INVALID');
  const badShape = await call('POST', '/sandboxes?wait=false', { body: { image: 'busybox', network: { outbound: true, allow: 'pypi.org' } } });
  assert.equal(badShape.status, 400, badShape.text);
  assert.equal(badShape.json.code, 'MC_API_BAD_REQUEST');
  assert.equal(badShape.json.issues[0].path, 'body.network');
  assert.equal(((await call('GET', '/sandboxes')).json.sandboxes as unknown[]).length, before.length, 'a refused request stores nothing');

  const good = await call('POST', '/sandboxes?wait=false', {
    body: { image: 'busybox', network: { outbound: true, allow: ['PyPI.org', '*.githubusercontent.com', '203.0.113.0/24'] } },
  });
  assert.equal(good.status, 202, good.text);
  assert.equal(good.json.network, 'outbound');
  assert.deepEqual(good.json.network_allow, ['pypi.org', '*.githubusercontent.com', '203.0.113.0/24'], 'kept in normal form');
  const read = await call('GET', `/sandboxes/${good.json.id as string}`);
  assert.equal(read.status, 200, read.text);
  assert.equal(read.json.network, 'outbound');
  assert.deepEqual(read.json.network_allow, good.json.network_allow);

  const open = await call('POST', '/sandboxes?wait=false', { body: { image: 'busybox', network: 'outbound' } });
  assert.equal(open.status, 202, open.text);
  assert.equal(open.json.network, 'outbound');
  assert.equal('network_allow' in open.json, false, 'no list, no field');
});

test('an unexpected failure is 500 MC_INTERNAL without a stack trace', async () => {
  // A real orchestrator whose Redis connection is gone: ioredis throws a plain Error.
  const orchestrator = new Orchestrator({ redisUrl: REDIS_URL });
  await orchestrator.close();
  const app = await buildApi({ orchestrator });
  try {
    const res = await app.inject({ method: 'GET', url: '/status' });
    assert.equal(res.statusCode, 500);
    const body = res.json() as { code: string; message: string; details: unknown };
    assert.equal(body.code, 'MC_INTERNAL');
    assert.doesNotMatch(res.body, /at .*\.js:\d+|Connection is closed|node_modules/);
    assert.match(body.message, /internal error \(request/);
  } finally {
    await app.close();
  }
});
