import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_LEASE_MS, MIN_LEASE_MS, leaseTiming } from './lease-timing.js';

test('leaseTiming: failover ≥ fence time + margin, for every lease time', () => {
  for (const leaseMs of [MIN_LEASE_MS, 3000, 4000, DEFAULT_LEASE_MS, 15_000, 60_000, 123_457]) {
    const t = leaseTiming(leaseMs);
    assert.equal(t.fenceAfterMs + t.marginMs, t.leaseMs, `${leaseMs}: the lease outlives the fence by exactly the margin`);
    assert.ok(t.marginMs >= leaseMs / 4 - 1, `${leaseMs}: margin is a quarter of the lease`);
    assert.ok(t.fenceCheckMs < t.marginMs / 2, `${leaseMs}: the local check runs well within the margin`);
    assert.ok(t.renewEveryMs + t.renewTimeoutMs < t.fenceAfterMs, `${leaseMs}: a renewal that times out leaves time for the next one`);
    assert.ok(t.fenceAfterMs - t.renewEveryMs >= t.marginMs, `${leaseMs}: a blip as long as the margin kills nothing`);
    assert.equal(t.hostTtlMs, t.leaseMs, `${leaseMs}: a host is presumed dead no earlier than its leases expire`);
  }
  assert.equal(leaseTiming().leaseMs, DEFAULT_LEASE_MS);
});

test('leaseTiming refuses a lease too short to fence safely, naming the value', () => {
  assert.throws(() => leaseTiming(1999), /at least 2000 ms, got 1999/);
  assert.throws(() => leaseTiming(2500.5), /integer/);
});
