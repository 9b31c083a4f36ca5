// Streaming routes against a real API server and real Redis: /events (SSE,
// resumable), /services/:name/logs (tail, follow as chunked text and as SSE),
// and the wait paths (/up?wait, /deployments/:id/wait) timing out cleanly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { HostRegistry, RedisLogSink } from '@monocore/engine';
import { startApi, type RunningApi } from '@monocore/api';
import { apiTestRedisUrl, flushDb } from './api-test-env.js';
import { TEST_REDIS_DBS } from '../support/env.js';

const REDIS_URL = apiTestRedisUrl(TEST_REDIS_DBS['api/api-streams']);
let api: RunningApi;
let redis: Redis;

/**
 * Reads a streaming response until `done(text)` is true or the time runs out.
 * `done` is re-checked every 100 ms too, so it may depend on values set after the data arrived.
 */
async function readUntil(res: Response, done: (text: string) => boolean, ms = 10_000): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let ended = false;
  const deadline = performance.now() + ms;
  let pending: ReturnType<typeof reader.read> | undefined;
  try {
    while (!done(text)) {
      if (performance.now() > deadline) throw new Error(`timed out; got so far:\n${text}`);
      if (ended) throw new Error(`the stream ended; got:\n${text}`);
      pending ??= reader.read();
      const tick = await Promise.race([pending, new Promise<'tick'>((r) => setTimeout(() => r('tick'), 100))]);
      if (tick === 'tick') continue;
      pending = undefined;
      if (tick.done) ended = true;
      else text += decoder.decode(tick.value, { stream: true });
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return text;
}

function sseEvents(text: string): Array<{ event: string; id?: string; data: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return text
    .split('\n\n')
    .map((block) => {
      const lines = block.split('\n').filter((l) => !l.startsWith(':') && l.length > 0);
      if (lines.length === 0) return undefined;
      const field = (name: string) => lines.filter((l) => l.startsWith(`${name}: `)).map((l) => l.slice(name.length + 2));
      const data = field('data').join('\n');
      return { event: field('event')[0] ?? 'message', id: field('id')[0], data: data.startsWith('{') ? JSON.parse(data) : data };
    })
    .filter((e): e is NonNullable<typeof e> => e !== undefined);
}

const config = {
  service: [
    { name: 'db', base: 'busybox', command: '/bin/sh', args: ['-c', 'sleep 1000'] },
    { name: 'web', base: 'busybox', depends_on: ['db'] },
  ],
};

before(async () => {
  await flushDb(REDIS_URL);
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  await new HostRegistry(redis).register({ id: 'streams-host', cpus: 4, ramMib: 8192, backends: ['qemu'] }, 120_000);
  api = await startApi({ redisUrl: REDIS_URL, host: '127.0.0.1', port: 0 });
});

after(async () => {
  await api?.close();
  redis?.disconnect();
});

test('GET /events streams state events as SSE with ids, filters by deployment, and resumes from Last-Event-ID', async () => {
  const post = async (path: string, body: unknown): Promise<{ deploymentId: string }> => {
    const res = await fetch(`${api.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 202, await res.clone().text());
    return (await res.json()) as { deploymentId: string };
  };
  const live = await fetch(`${api.url}/events`);
  assert.equal(live.status, 200);
  assert.match(live.headers.get('content-type') ?? '', /text\/event-stream/);
  let upId = '';
  let downId = '';
  const reading = readUntil(live, (t) => {
    const ids = sseEvents(t).filter((e) => e.event === 'state').map((e) => e.data.deploymentId);
    return upId !== '' && downId !== '' && ids.includes(upId) && ids.includes(downId);
  });
  // No pause: the stream's start was pinned before its headers were sent, so nothing is missed.
  upId = (await post('/up', config)).deploymentId;
  downId = (await post('/down', { services: ['web'] })).deploymentId;
  const events = sseEvents(await reading).filter((e) => e.event === 'state');
  for (const e of events) {
    assert.ok(e.id && /^\d+-\d+$/.test(e.id), `event id is a stream id: ${e.id}`);
    assert.equal(e.data.id, e.id, 'the SSE id is the event id');
    assert.ok(['transition', 'deployment', 'host'].includes(e.data.kind));
  }
  const firstOfUp = events.find((e) => e.data.deploymentId === upId)!;

  // Resume after the first event of the up, keeping only the down's events.
  const resumed = await fetch(`${api.url}/events?deployment=${downId}`, { headers: { 'last-event-id': firstOfUp.id! } });
  const again = sseEvents(await readUntil(resumed, (t) => sseEvents(t).some((e) => e.event === 'state'))).filter((e) => e.event === 'state');
  assert.ok(again.length > 0);
  assert.ok(again.every((e) => e.data.deploymentId === downId), 'the deployment filter applies');
  assert.ok(again.every((e) => e.id! > firstOfUp.id!), 'replays only what came after Last-Event-ID');
});

test('GET /services/:name/logs: tail, follow as chunked text, follow as SSE, stderr separate', async () => {
  const sink = new RedisLogSink(redis, 'web');
  for (let i = 1; i <= 5; i++) sink.push('stdout', `line ${i}`);
  sink.push('stderr', 'oops');
  await sink.flush();

  const tail = await fetch(`${api.url}/services/web/logs?tail=2`);
  assert.equal(tail.status, 200);
  assert.match(tail.headers.get('content-type') ?? '', /text\/plain/);
  assert.equal(await tail.text(), 'line 4\nline 5\n');
  assert.equal(await (await fetch(`${api.url}/services/web/logs?stream=stderr`)).text(), 'oops\n');

  const follow = await fetch(`${api.url}/services/web/logs?tail=1&follow=true`);
  assert.equal(follow.status, 200);
  const followed = readUntil(follow, (t) => t.includes('line 6'));
  setTimeout(() => {
    sink.push('stdout', 'line 6');
    void sink.flush();
  }, 300);
  assert.equal(await followed, 'line 5\nline 6\n');

  const sse = await fetch(`${api.url}/services/web/logs?tail=1&follow=true`, { headers: { accept: 'text/event-stream' } });
  assert.match(sse.headers.get('content-type') ?? '', /text\/event-stream/);
  const logEvents = sseEvents(await readUntil(sse, (t) => t.includes('data: line 6'))).filter((e) => e.event === 'log');
  assert.deepEqual(logEvents.map((e) => e.data), ['line 6']);
  await sink.close();
});

test('waiting is bounded: /up?wait=true and /deployments/:id/wait answer 504 MC_ORCH_TIMEOUT, the deployment goes on', async () => {
  const waited = await fetch(`${api.url}/up?wait=true&timeout=1`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service: [{ name: 'slow', base: 'busybox' }] }),
  });
  assert.equal(waited.status, 504);
  assert.equal(((await waited.json()) as { code: string }).code, 'MC_ORCH_TIMEOUT');

  const up = (await (await fetch(`${api.url}/up`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ config: { service: [{ name: 'slow2', base: 'busybox' }] } }),
  })).json()) as { deploymentId: string };
  const wait = await fetch(`${api.url}/deployments/${up.deploymentId}/wait?timeout=1`);
  assert.equal(wait.status, 504);
  const unknown = await fetch(`${api.url}/deployments/no-such-deployment/wait?timeout=1`);
  assert.equal(unknown.status, 404);
  assert.equal(((await unknown.json()) as { code: string }).code, 'MC_ORCH_DEPLOYMENT_NOT_FOUND');
  const status = (await (await fetch(`${api.url}/status?services=slow,slow2`)).json()) as { services: Array<{ desired: string }> };
  assert.equal(status.services.length, 2);
  assert.ok(status.services.every((s) => s.desired === 'running'));
});
