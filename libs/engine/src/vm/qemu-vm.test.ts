import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextQemuVmPhase, type QemuVmPhase, type QemuVmPhaseKind } from './qemu-vm.js';

const phases: Record<QemuVmPhaseKind, () => QemuVmPhase> = {
  booting: () => ({ kind: 'booting', watchdog: setTimeout(() => {}, 0) }),
  running: () => ({ kind: 'running' }),
  stopping: () => ({ kind: 'stopping' }),
  exiting: () => ({ kind: 'exiting', exitCode: 0, started: true, stopped: false }),
  killing: () => ({ kind: 'killing', reason: 'killed', started: true }),
  exited: () => ({ kind: 'exited' }),
};
const kinds = Object.keys(phases) as QemuVmPhaseKind[];
const allowed = (from: QemuVmPhaseKind, to: QemuVmPhaseKind): boolean => {
  try {
    nextQemuVmPhase('t', phases[from](), phases[to]());
    return true;
  } catch (e) {
    assert.match((e as Error).message, new RegExp(`vm "t": invalid QEMU VM phase transition ${from} → ${to}`));
    return false;
  }
};

test('QemuVm phases: QEMU can end in any live phase; exited is terminal; a decided end (exiting, killing) is never undone', () => {
  for (const from of kinds) assert.equal(allowed(from, 'exited'), from !== 'exited', `${from} → exited`);
  for (const to of kinds) assert.equal(allowed('exited', to), false, `exited → ${to}`);
  for (const from of ['exiting', 'killing'] as const) {
    for (const to of kinds) assert.equal(allowed(from, to), to === 'exited', `${from} → ${to}: the first decisive event wins`);
  }
  assert.equal(allowed('booting', 'running'), true);
  assert.equal(allowed('running', 'booting'), false, 'a command that started does not boot again in the same QEMU');
  assert.equal(allowed('booting', 'stopping'), false, 'nothing to signal before the command started: stop() kills');
  assert.equal(allowed('stopping', 'running'), false);
});

test('QemuVm phases: leaving booting disarms the boot watchdog', async () => {
  let fired = false;
  const booting: QemuVmPhase = { kind: 'booting', watchdog: setTimeout(() => (fired = true), 1) };
  nextQemuVmPhase('t', booting, { kind: 'running' });
  await new Promise((r) => setTimeout(r, 20)); // timers fire in deadline order: the watchdog's is earlier
  assert.equal(fired, false);
});
