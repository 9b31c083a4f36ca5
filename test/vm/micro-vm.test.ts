/** The library API (MicroVm.builder) and backend selection, booting for real. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMonocoreError, MicroVm, selectBackend } from '@monocore/engine';
import { Collect, kernelDir, testHome, testRootfs } from './vm-fixtures.js';

test('selectBackend picks qemu here (libkrun is not installed) and reports why libkrun was passed over', async () => {
  const sel = await selectBackend({ home: testHome(), kernelDir: kernelDir(), prefer: 'auto' });
  assert.equal(sel.backend.name, 'qemu');
  assert.equal(sel.availability.accel, 'tcg', 'kvm_pvm host: TCG, never KVM');
  const krun = sel.probed.find((p) => p.name === 'libkrun');
  assert.ok(krun && !krun.availability.available && krun.availability.reason.length > 0);
  assert.match(sel.reason, /^qemu \(tcg\), auto; libkrun passed over: .+; qemu: /, 'the selection says which backend and why');
  await assert.rejects(selectBackend({ home: testHome(), kernelDir: kernelDir(), prefer: 'libkrun' }), (e: unknown) =>
    isMonocoreError(e, 'MC_VM_BACKEND_UNAVAILABLE') && /libkrun/.test(e.message),
  );
});

test('MicroVm.builder().rootPath().ramMib().execPath().args().build() then start()/wait()', async () => {
  const { backend } = await selectBackend({ home: testHome(), kernelDir: kernelDir() });
  const out = new Collect();
  const vm = MicroVm.builder()
    .rootPath(testRootfs())
    .ramMib(256)
    .execPath('/bin/echo')
    .args(['hello', 'from the builder'])
    .stdout(out)
    .backend(backend)
    .build();
  const handle = await vm.start();
  assert.ok(handle.pid > 0);
  assert.deepEqual(await vm.wait(), { exitCode: 0, reason: 'exited' });
  assert.equal(out.text, 'hello from the builder\n');
  assert.throws(() => MicroVm.builder().ramMib(512).build(), (e: unknown) => isMonocoreError(e, 'MC_VM_SPEC_INVALID') && /rootPath/.test(e.message));
});
