// What a worker records (MetricsRecorder) is what GET /metrics reads back
// (ClusterMetrics), through a real Redis: cumulative buckets, sum and count,
// per-host series, counters, series that expired, a bucket table that changed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { ClusterMetrics, DURATION_BUCKETS, Keys, MetricsRecorder, seriesId, type HistogramSeries } from '@monocore/engine';
import { freshDb } from '../orchestration/support.js';
import { TEST_REDIS_DBS } from '../support/env.js';

let redis: Redis;
let reader: ClusterMetrics;

before(async () => {
  redis = new Redis(await freshDb(TEST_REDIS_DBS['observability/cluster-metrics']), { maxRetriesPerRequest: 1 });
  reader = new ClusterMetrics(redis);
});

after(async () => {
  await reader.close();
  redis.disconnect();
});

const bucket = (s: HistogramSeries, le: number): number => s.buckets.find((b) => b.le === le)?.count ?? -1;

test('durations land in cumulative buckets per host, with sum and count; counters add up', async () => {
  await redis.flushdb();
  const h1 = new MetricsRecorder(redis, { labels: { host: 'h1' } });
  const h2 = new MetricsRecorder(redis, { labels: { host: 'h2' } });
  await Promise.all([
    h1.observe('boot', 0.2, { backend: 'qemu' }),
    h1.observe('boot', 2.5, { backend: 'qemu' }), // exactly on a bound: counts in that bucket (le = less or equal)
    h1.observe('boot', 3, { backend: 'qemu' }),
    h1.observe('boot', 5000, { backend: 'qemu' }), // beyond the last bound: only in +Inf
    h2.observe('boot', 0.004, { backend: 'qemu' }),
    h1.observe('pull', 1.5, { cache: 'cold' }),
    h1.observe('pull', 0.02, { cache: 'warm' }),
    h1.increment('restarts'),
    h1.increment('restarts', {}, 2),
  ]);
  const snap = await reader.read();
  const boot1 = snap.durations.find((s) => s.kind === 'boot' && s.labels.host === 'h1');
  assert.ok(boot1, JSON.stringify(snap.durations));
  assert.deepEqual(boot1.labels, { host: 'h1', backend: 'qemu' });
  assert.equal(boot1.count, 4);
  assert.ok(Math.abs(boot1.sum - 5005.7) < 1e-9, String(boot1.sum));
  assert.equal(bucket(boot1, 0.1), 0);
  assert.equal(bucket(boot1, 0.25), 1);
  assert.equal(bucket(boot1, 2.5), 2);
  assert.equal(bucket(boot1, 5), 3);
  assert.equal(bucket(boot1, 600), 3);
  assert.equal(bucket(boot1, Infinity), 4);
  assert.deepEqual(
    boot1.buckets.map((b) => b.le),
    [...DURATION_BUCKETS, Infinity],
    'every bound of the table, ascending, then +Inf',
  );
  for (let i = 1; i < boot1.buckets.length; i++) assert.ok(boot1.buckets[i]!.count >= boot1.buckets[i - 1]!.count, 'cumulative');

  const boot2 = snap.durations.find((s) => s.kind === 'boot' && s.labels.host === 'h2');
  assert.equal(boot2?.count, 1);
  assert.equal(bucket(boot2!, 0.01), 1);

  const pulls = snap.durations.filter((s) => s.kind === 'pull').map((s) => [s.labels.cache, s.count]).sort();
  assert.deepEqual(pulls, [['cold', 1], ['warm', 1]]);
  assert.deepEqual(snap.counters, [{ kind: 'restarts', labels: { host: 'h1' }, value: 3 }]);
});

test('a series past its TTL leaves the index; one a release no longer knows is not rendered', async () => {
  await redis.flushdb();
  const rec = new MetricsRecorder(redis, { labels: { host: 'gone' } });
  await rec.observe('unpack', 1);
  await rec.increment('deployments', { kind: 'up' });
  const id = seriesId('unpack', { host: 'gone' });
  assert.equal(await redis.sismember(Keys.metricSeriesIndex(), id), 1);
  assert.ok((await redis.pttl(Keys.metricSeries(id))) > 0, 'every series carries a TTL');
  await redis.del(Keys.metricSeries(id)); // what the TTL does
  await redis.hset(Keys.metricSeries('frobnicate:host=x'), { type: 'duration', metric: 'frobnicate', labels: '{}', count: 1 });
  await redis.sadd(Keys.metricSeriesIndex(), 'frobnicate:host=x');
  const snap = await reader.read();
  assert.deepEqual(snap.durations, []);
  assert.deepEqual(snap.counters, [{ kind: 'deployments', labels: { kind: 'up' }, value: 1 }]);
  assert.equal(await redis.sismember(Keys.metricSeriesIndex(), id), 0, 'the expired series was dropped from the index');
});

test('a bucket bound no longer in the table still counts toward the next bound above it', async () => {
  await redis.flushdb();
  const id = seriesId('boot', { host: 'old', backend: 'qemu' });
  // As an older release with a 7 s bucket would have written it.
  await redis.hset(Keys.metricSeries(id), { type: 'duration', metric: 'boot', labels: '{"host":"old","backend":"qemu"}', 'le:7': 2, 'le:1': 1, count: 3, sum: 15 });
  await redis.sadd(Keys.metricSeriesIndex(), id);
  const [s] = (await reader.read()).durations;
  assert.ok(s);
  assert.equal(bucket(s, 5), 1);
  assert.equal(bucket(s, 10), 3);
  assert.equal(bucket(s, Infinity), 3);
});

test('a recorder never rejects: a dead connection drops the metric, not the work it measures', async () => {
  const dead = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null });
  dead.on('error', () => undefined);
  const rec = new MetricsRecorder(dead, { labels: { host: 'x' } });
  await rec.observe('boot', 1);
  await rec.increment('restarts');
  await rec.observe('boot', Number.NaN); // not a duration: dropped before any write
  dead.disconnect();
});
