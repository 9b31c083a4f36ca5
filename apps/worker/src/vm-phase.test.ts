import { test } from 'node:test';
import assert from 'node:assert/strict';
import { handleOf, transitionVm, type VmPhase } from './vm-phase.js';

test('vm phase: allowed transitions, a backoff timer is cleared on leaving, ended is final', () => {
  const holder: { phase: VmPhase } = { phase: { kind: 'booting' } };
  let fired = false;
  transitionVm('s', holder, { kind: 'backoff', timer: setTimeout(() => (fired = true), 10) });
  transitionVm('s', holder, { kind: 'booting' });
  assert.equal(handleOf(holder.phase), undefined);
  transitionVm('s', holder, { kind: 'ended' });
  assert.throws(() => transitionVm('s', holder, { kind: 'booting' }), /invalid VM phase transition ended → booting/);
  return new Promise<void>((resolve) =>
    setTimeout(() => {
      assert.equal(fired, false, 'leaving backoff cancelled the restart timer');
      resolve();
    }, 30),
  );
});

test('vm phase: running cannot go back to booting (a re-boot stops the VM first)', () => {
  const fakeHandle = { pid: 1 } as never;
  const holder: { phase: VmPhase } = { phase: { kind: 'running', handle: fakeHandle, upSince: 0 } };
  assert.equal(handleOf(holder.phase), fakeHandle);
  assert.throws(() => transitionVm('s', holder, { kind: 'booting' }), /running → booting/);
});
