import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workerOptionsFromEnv } from './worker-env.js';
import { workerHostId } from './host-id.js';

test('workerOptionsFromEnv: set variables become options, unset or empty ones are left to the defaults', () => {
  assert.deepEqual(workerOptionsFromEnv({}), {});
  assert.deepEqual(
    workerOptionsFromEnv({ MONOCORE_WORKER_CPUS: '8', MONOCORE_WORKER_RAM_MIB: '4096', MONOCORE_LEASE_MS: '20000', MONOCORE_RESTART_BACKOFF_MS: '', MONOCORE_WORKER_CONCURRENCY: '2' }),
    { cpus: 8, ramMib: 4096, leaseMs: 20_000, concurrency: 2 },
  );
});

test('workerOptionsFromEnv: a bad value names its variable', () => {
  assert.throws(() => workerOptionsFromEnv({ MONOCORE_LEASE_MS: '8s' }), /^Error: MONOCORE_LEASE_MS=8s is not a positive number$/);
  assert.throws(() => workerOptionsFromEnv({ MONOCORE_WORKER_CPUS: '0' }), /MONOCORE_WORKER_CPUS=0/);
  assert.throws(() => workerOptionsFromEnv({ MONOCORE_WORKER_RAM_MIB: '-1' }), /MONOCORE_WORKER_RAM_MIB=-1/);
});

test('workerOptionsFromEnv: MONOCORE_SPARES may be 0 (off); anything but a whole number is refused by name', () => {
  assert.deepEqual(workerOptionsFromEnv({ MONOCORE_SPARES: '0' }), { spares: 0 });
  assert.deepEqual(workerOptionsFromEnv({ MONOCORE_SPARES: '3' }), { spares: 3 });
  assert.throws(() => workerOptionsFromEnv({ MONOCORE_SPARES: '1.5' }), /MONOCORE_SPARES=1\.5/);
  assert.throws(() => workerOptionsFromEnv({ MONOCORE_SPARES: 'yes' }), /MONOCORE_SPARES=yes/);
});

test('workerHostId: MONOCORE_HOST_ID, else the hostname made queue-safe', () => {
  assert.equal(workerHostId({ MONOCORE_HOST_ID: 'h-1' }), 'h-1');
  assert.match(workerHostId({}), /^[A-Za-z0-9_-]+$/);
});
