import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detectAccel, hostTscKhz } from './acceleration.js';

test('detectAccel never picks KVM on a kvm_pvm host, picks HVF on macOS, honours the override', () => {
  const sys = (files: string[], platform = 'linux') => ({ platform: platform as NodeJS.Platform, exists: (p: string) => files.includes(p) });
  assert.equal(detectAccel({}, sys(['/dev/kvm', '/sys/module/kvm_pvm'])).accel, 'tcg');
  assert.match(detectAccel({}, sys(['/dev/kvm', '/sys/module/kvm_pvm'])).reason, /kvm_pvm/);
  assert.equal(detectAccel({}, sys([])).accel, 'tcg');
  assert.equal(detectAccel({}, sys([], 'darwin')).accel, 'hvf');
  assert.equal(detectAccel({ MONOCORE_QEMU_ACCEL: 'tcg' }, sys(['/dev/kvm'])).accel, 'tcg');
  assert.equal(hostTscKhz('processor\t: 0\ncpu MHz\t\t: 2899.998\n'), 2899998);
  assert.equal(hostTscKhz('nothing'), undefined);
});
