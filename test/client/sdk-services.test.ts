// The SDK (@monocore/client) against a real `monocore serve` (embedded Redis,
// real worker booting a real QEMU/TCG VM from the loopback registry): the
// service calls (up with events, status, logs, follow, waitFor, down, remove)
// and its errors (the API's codes and statuses, unreachable, unauthorized,
// answers checked against their schema). One VM boot.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { MonocoreApiError, MonocoreClient, type StateEvent } from '@monocore/client';
import { testEnvWithKernel } from '../support/env.js';
import { startServe, type ServeProcess } from '../support/serve-process.js';
import { until } from '../orchestration/support.js';

const env = testEnvWithKernel();
const TOKEN = 'sdk-services-token-0123456789';
let serve: ServeProcess;
let client: MonocoreClient;

before(async () => {
  serve = await startServe(env, { hostId: 'sdk-host', token: TOKEN, prefix: 'sdk-services-' });
  // Defaults from the environment: the URL, and the local credential serve wrote in MONOCORE_HOME.
  client = new MonocoreClient({ env: serve.clientEnv() });
});

after(async () => {
  await client?.close();
  await serve?.stop();
});

const config = (image: string) => ({
  service: [
    {
      name: 'echoer',
      base: image,
      ram: 192,
      command: '/bin/sh',
      args: ['-c', 'echo hello-from-echoer; echo echoer-err >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done'],
    },
  ],
});

test('services through the SDK: up (with events), status, logs, follow, waitFor, down, remove', async () => {
  const stop = new AbortController();
  // Subscribed once the promise resolves: every event of the up below is in the stream.
  const events = await client.events({ services: ['echoer'], signal: stop.signal });
  const seen: StateEvent[] = [];
  const running = (async () => {
    for await (const e of events) {
      seen.push(e);
      if (e.kind === 'transition' && e.to === 'running') return e;
    }
    return undefined;
  })();

  const up = await client.up(config(env.image));
  assert.deepEqual(up.plan.map((p) => p.name), ['echoer']);
  assert.equal(up.plan[0]?.host, 'sdk-host');
  const outcome = await client.waitFor(up.deploymentId, { timeout: 300 });
  assert.equal(outcome.ok, true, JSON.stringify(outcome));
  const transition = await running;
  assert.equal(transition?.service, 'echoer', JSON.stringify(seen));
  stop.abort();

  const [row] = await client.status({ services: ['echoer'] });
  assert.equal(row?.status, 'running');
  assert.equal(row?.host, 'sdk-host');

  // The tail (stdout and stderr apart), then following until aborted.
  const tail = async (stream: 'stdout' | 'stderr'): Promise<string[]> => {
    const out: string[] = [];
    for await (const line of await client.logs('echoer', { stream, tail: 1000 })) out.push(line);
    return out;
  };
  // Output reaches the log store in batches, a moment after the service is running.
  const stdout = await until('the first line in the stdout log', async () => {
    const lines = await tail('stdout');
    return lines.length > 0 && lines;
  });
  assert.equal(stdout[0], 'hello-from-echoer');
  assert.deepEqual(await until('the stderr line', async () => {
    const lines = await tail('stderr');
    return lines.length > 0 && lines;
  }), ['echoer-err']);
  const follow = new AbortController();
  const followed: string[] = [];
  for await (const line of await client.logs('echoer', { follow: true, tail: 0, signal: follow.signal })) {
    followed.push(line);
    if (followed.length === 2) follow.abort();
  }
  assert.match(followed[0] ?? '', /^tick \d+$/);
  assert.equal(followed.length, 2, 'iteration ends quietly when the signal aborts');

  const down = await client.down({ services: ['echoer'], wait: true, timeout: 120 });
  assert.deepEqual(down.order, ['echoer']);
  assert.equal(down.services.find((s) => s.name === 'echoer')?.status, 'stopped');
  await client.remove({ wait: true });
  assert.deepEqual(await client.status(), []);
  assert.ok((await client.hosts()).some((h) => h.id === 'sdk-host' && h.alive));
});

test('errors carry the API code, HTTP status, details and issues', async () => {
  const unknown = await client.logs('no-such-service').then(
    () => assert.fail('logs of an unknown service must fail'),
    (e: unknown) => e,
  );
  assert.ok(unknown instanceof MonocoreApiError);
  assert.equal(unknown.code, 'MC_ORCH_UNKNOWN_SERVICE');
  assert.equal(unknown.status, 404);

  const invalid = await client.up({ service: [{ name: 'Bad', base: env.image, ram: 'lots' }] }).catch((e: unknown) => e);
  assert.ok(invalid instanceof MonocoreApiError);
  assert.equal(invalid.code, 'MC_CONFIG_INVALID');
  assert.equal(invalid.status, 400);
  assert.deepEqual(invalid.issues.map((i) => i.path).sort(), ['service[0].name', 'service[0].ram']);

  // Without the local credential and with a wrong token: 401.
  const stranger = new MonocoreClient({ url: serve.url, token: 'not-the-token-0123456789', localToken: false });
  const denied = await stranger.status().catch((e: unknown) => e);
  await stranger.close();
  assert.ok(denied instanceof MonocoreApiError);
  assert.equal(denied.code, 'MC_API_UNAUTHORIZED');
  assert.equal(denied.status, 401);

  // With the bearer token instead of the local credential: allowed.
  const bearer = new MonocoreClient({ url: serve.url, token: TOKEN, localToken: false });
  assert.ok(Array.isArray(await bearer.status()));
  await bearer.close();

  // Nothing listens: MC_API_UNREACHABLE, no HTTP status. With onUnreachable, the call goes where it points.
  const nowhere = new MonocoreClient({ url: 'http://127.0.0.1:9', localToken: false });
  const gone = await nowhere.status().catch((e: unknown) => e);
  assert.ok(gone instanceof MonocoreApiError);
  assert.equal(gone.code, 'MC_API_UNREACHABLE');
  assert.equal(gone.status, 0);
  assert.match(gone.message, /cannot reach the monocore API at http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED\)/);
  await nowhere.close();
  let asked = 0;
  const rescued = new MonocoreClient({
    url: 'http://127.0.0.1:9',
    token: TOKEN,
    localToken: false,
    onUnreachable: async () => {
      asked++;
      return serve.url;
    },
  });
  await Promise.all([rescued.status(), rescued.hosts()]);
  assert.equal(asked, 1, 'concurrent refused calls share one recovery');
  assert.equal(rescued.url, serve.url);
  await rescued.close();
});

test('an answer that does not match its schema is MC_API_BAD_RESPONSE naming the route and field', async () => {
  const liar = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url?.startsWith('/status')) res.end(JSON.stringify({ services: [{ name: 'x', status: 7 }] }));
    else {
      res.statusCode = 502;
      res.end('<html>bad gateway</html>');
    }
  });
  await new Promise<void>((resolve) => liar.listen(0, '127.0.0.1', resolve));
  const port = (liar.address() as { port: number }).port;
  const c = new MonocoreClient({ url: `http://127.0.0.1:${port}`, localToken: false });
  try {
    const wrong = await c.status().catch((e: unknown) => e);
    assert.ok(wrong instanceof MonocoreApiError);
    assert.equal(wrong.code, 'MC_API_BAD_RESPONSE');
    assert.match(wrong.message, /GET \/status .*services\.0\.status/);
    const proxy = await c.hosts().catch((e: unknown) => e);
    assert.ok(proxy instanceof MonocoreApiError);
    assert.equal(proxy.code, 'MC_API_BAD_RESPONSE');
    assert.equal(proxy.status, 502);
    assert.match(proxy.message, /HTTP 502 to GET \/hosts: <html>bad gateway/);
  } finally {
    await c.close();
    liar.close();
  }
});
