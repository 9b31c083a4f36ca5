import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MonocoreError } from '../errors/index.js';
import { SANDBOX_STATUSES, assertSandboxTransition, canSandboxTransition, isEndedSandboxStatus, sandboxSources } from './sandbox-state.js';

test('ended statuses are final; running is reached from creating and (resume) paused; only a running sandbox pauses', () => {
  for (const s of SANDBOX_STATUSES) {
    if (isEndedSandboxStatus(s)) assert.deepEqual(SANDBOX_STATUSES.filter((t) => canSandboxTransition(s, t)), [], `${s} is final`);
  }
  assert.deepEqual(sandboxSources('running'), ['creating', 'paused']);
  assert.deepEqual(sandboxSources('paused'), ['running']);
  assert.deepEqual(sandboxSources('lost'), ['creating', 'running', 'paused']);
  assert.deepEqual(sandboxSources('failed'), ['creating'], 'a running sandbox that dies is lost, not failed');
});

test('an invalid transition names both states', () => {
  assert.throws(
    () => assertSandboxTransition('sb-000000000000', 'expired', 'running'),
    (e: unknown) => e instanceof MonocoreError && e.code === 'MC_STATE_INVALID_TRANSITION' && /expired → running/.test(e.message),
  );
});
