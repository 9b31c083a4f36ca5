/**
 * VmSpec.user (the image's OCI User) applied by the guest init, in real TCG
 * boots: a numeric uid:gid without passwd entries, and an unknown name.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import { isMonocoreError, LibkrunBackend } from '@monocore/engine';
import { backend, spec } from './vm-fixtures.js';

const qemu = backend();

test('qemu: spec.user "1234:5678" runs the command as that uid/gid with only that group; an unknown user name exits 125 naming it', async () => {
  const ok = spec('user-num', {
    user: '1234:5678',
    command: '/bin/sh',
    // Unprivileged for real: root-owned /etc is not writable (the overlay upper keeps the image's owners).
    args: ['-c', 'echo "$(id -u) $(id -g) $(id -G) HOME=$HOME"; touch /etc/x 2>/dev/null && echo wrote-etc || echo etc-denied'],
  });
  const bad = spec('user-missing', { user: 'nosuchuser', command: '/bin/true' });
  const [hok, hbad] = await Promise.all([qemu.start(ok), qemu.start(bad)]);
  const badStarted = await hbad.started.then(() => true, () => false);
  const [eok, ebad] = await Promise.all([hok.wait(), hbad.wait()]);
  assert.deepEqual(eok, { exitCode: 0, reason: 'exited' }, ok.stderr.text);
  assert.equal(ok.stdout.text, '1234 5678 5678 HOME=/\netc-denied\n');
  assert.equal(ebad.exitCode, 125, `${JSON.stringify(ebad)} stderr=${bad.stderr.text}`);
  assert.equal(ebad.reason, 'exited');
  assert.equal(badStarted, false, 'started rejects: the command never ran');
  assert.match(bad.stderr.text, /user "nosuchuser": no such user in \/etc\/passwd/);
  for (const s of [ok, bad]) rmSync(s.stateDir, { recursive: true, force: true });
});

test('libkrun: a non-root spec.user is refused with MC_VM_LIBKRUN_UNSUPPORTED naming the field', async () => {
  const s = spec('krun-user', { user: '1000' });
  await assert.rejects(new LibkrunBackend().start(s), (e: unknown) => isMonocoreError(e, 'MC_VM_LIBKRUN_UNSUPPORTED') && /user: "1000"/.test(e.message));
});
