import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { Keys } from '../state/keys.js';
import { RedisLogSink } from './log-sink.js';

test('RedisLogSink: while Redis does not answer, a flood keeps at most one batch in flight and a bounded buffer; the rest is dropped and counted', async () => {
  // A port that accepts nothing: the client queues its commands and waits (as a worker's connection does in an outage).
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as { port: number }).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const redis = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: null, retryStrategy: () => 50, lazyConnect: true });
  redis.on('error', () => undefined);
  const sink = new RedisLogSink(redis, 'flood', 1, 1000, 256 * 1024);
  const line = 'x'.repeat(999);
  const pushed = 20_000;
  for (let i = 0; i < pushed; i++) {
    sink.push('stdout', line);
    // Let the flush timer fire now and then, as the guest's stream would.
    if (i % 500 === 0) await new Promise((r) => setTimeout(r, 2));
  }
  // Held: one batch in flight plus the buffer, each at most 256 KiB of lines (262 lines of 1000 bytes).
  const held = pushed - sink.dropped;
  assert.ok(held <= 2 * 263, `${held} lines held in memory while Redis is away (${sink.dropped} dropped)`);
  redis.disconnect();
});

test('RedisLogSink: when it must drop, the newest lines are kept (the last line of a flood reaches Redis)', async () => {
  const url = process.env.MONOCORE_TEST_REDIS_URL;
  assert.ok(url, 'MONOCORE_TEST_REDIS_URL is not set: run `bash scripts/test-services.sh start && . .monocore-test/env.sh` (or npm test)');
  const redis = new Redis(url);
  const service = `sink-${process.pid}-${Date.now()}`;
  try {
    // 1001 lines pushed in one turn: no flush can run meanwhile, so a 100-line buffer overflows.
    const sink = new RedisLogSink(redis, service, 1, 100, 1 << 20);
    for (let i = 0; i < 1000; i++) sink.push('stdout', `line ${i}`);
    sink.push('stdout', 'flood-done');
    await sink.close();
    const entries = await redis.xrange(Keys.logs(service, 'stdout'), '-', '+');
    const lines = entries.map(([, fields]) => fields[1]);
    assert.equal(lines.at(-1), 'flood-done');
    assert.equal(lines.at(-2), 'line 999', 'the newest lines, in order');
    assert.ok(lines.length >= 90 && lines.length <= 100, `${lines.length} lines kept`);
    assert.equal(sink.dropped + lines.length, 1001);
  } finally {
    await redis.del(Keys.logs(service, 'stdout'));
    redis.disconnect();
  }
});
