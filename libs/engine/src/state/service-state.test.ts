import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MonocoreError } from '../errors/index.js';
import { SERVICE_STATUSES, allowedSources, assertTransition, canTransition, formatState } from './service-state.js';

test('the transition table allows the lifecycle and forbids skipping steps', () => {
  assert.ok(canTransition('pending', 'starting'));
  assert.ok(canTransition('starting', 'running'));
  assert.ok(canTransition('running', 'restarting'));
  assert.ok(canTransition('restarting', 'starting'));
  assert.ok(canTransition('starting', 'starting'), 'a boot attempted again after its worker died');
  assert.ok(canTransition('running', 'lost'));
  assert.ok(canTransition('lost', 'pending'));
  assert.ok(!canTransition('stopped', 'running'), 'a stopped service must boot (starting) before running');
  assert.ok(!canTransition('failed', 'running'));
  assert.ok(!canTransition('stopping', 'running'));
  assert.ok(!canTransition('lost', 'lost'));
});

test('an invalid transition raises MC_STATE_INVALID_TRANSITION naming both states', () => {
  assert.throws(
    () => assertTransition('web', 'stopped', 'running'),
    (err: unknown) =>
      err instanceof MonocoreError &&
      err.code === 'MC_STATE_INVALID_TRANSITION' &&
      /web/.test(err.message) &&
      /stopped → running/.test(err.message) &&
      err.details.from === 'stopped' &&
      err.details.to === 'running',
  );
});

test('allowedSources is the inverse of the table, for every status', () => {
  for (const to of SERVICE_STATUSES) {
    for (const from of SERVICE_STATUSES) assert.equal(allowedSources(to).includes(from), canTransition(from, to), `${from} → ${to}`);
  }
});

test('statuses with data render like the CLI shows them', () => {
  assert.equal(formatState({ status: 'exited', exitCode: 3 }), 'exited(3)');
  assert.equal(formatState({ status: 'failed', reason: 'boot timeout' }), 'failed(boot timeout)');
  assert.equal(formatState({ status: 'blocked', by: 'db' }), 'blocked(db)');
  assert.equal(formatState({ status: 'running' }), 'running');
});
