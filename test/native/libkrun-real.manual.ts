/**
 * MANUAL check against a REAL libkrun: not run by `npm test` (the file name
 * does not end in .test.ts), because libkrun cannot be installed on the
 * machines this project is built on. On a Linux host with usable KVM
 * (not kvm_pvm) and libkrun + libkrunfw installed, as root:
 *
 *   npx tsc -b && bash scripts/test-services.sh start && . .monocore-test/env.sh
 *   MONOCORE_LIBKRUN_PATH=/usr/lib64/libkrun.so.1 node --test dist/test/native/libkrun-real.manual.js
 *
 * It runs the conformance suite's groups that libkrun can honour
 * (validation, exit codes, argv-env: its quoted and multi-line arguments take
 * the /.krun_config.json route; not lifecycle: libkrun has no graceful SIGTERM
 * path, see docs/LIBKRUN.md), plus plain argv through krun_set_exec, the
 * copy-on-write root and a volume, all through a real guest.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LibkrunBackend } from '@monocore/engine';
import { hypervisorBackendSuite } from '../conformance/hypervisor-backend.suite.js';
import { spec, tempDir, testHome } from '../vm/vm-fixtures.js';

const backend = new LibkrunBackend({ home: testHome(), bootTimeoutMs: 60_000 });

hypervisorBackendSuite('libkrun (REAL libkrun)', () => ({ backend, spec }), { groups: ['validation', 'exit-codes', 'argv-env'] });

test('libkrun (REAL libkrun): plain argv, env and workdir through krun_set_exec (kernel command line)', async () => {
  const args = ['a b', "it's", 'ünïcødé ✓ 日本', '$HOME `x`', '*'];
  const s = spec('lk-argv', { command: '/bin/printf', args: ['<%s>\\n', ...args] });
  const h = await backend.start(s);
  assert.equal(h.commandTransport, 'krun_set_exec');
  assert.deepEqual(await h.wait(), { exitCode: 0, reason: 'exited' });
  assert.equal(s.stdout.text, args.map((a) => `<${a}>\n`).join(''));

  const e = spec('lk-env', { command: '/bin/sh', args: ['-c', 'echo FOO=$FOO; pwd; echo to-stderr >&2; exit 7'], env: ['PATH=/bin', 'FOO=x y=z', 'FOO=later wins'], workdir: '/tmp' });
  const he = await backend.start(e);
  assert.equal(he.commandTransport, 'krun_set_exec');
  assert.deepEqual(await he.wait(), { exitCode: 7, reason: 'exited' });
  assert.equal(e.stdout.text, 'FOO=later wins\n/tmp\n');
  assert.equal(e.stderr.text, 'to-stderr\n');
});

test('libkrun (REAL libkrun): copy-on-write root per service and a read-write volume', async () => {
  const vol = tempDir('lk-vol');
  writeFileSync(join(vol, 'in.txt'), 'from host');
  mkdirSync(join(vol, 'sub'));
  const a = spec('lk-cow-a', { command: '/bin/sh', args: ['-c', 'echo mine > /etc/marker && cat /data/in.txt && echo from-guest > /data/out.txt'], volumes: [{ host: vol, guest: '/data' }] });
  assert.equal((await (await backend.start(a)).wait()).exitCode, 0);
  assert.equal(a.stdout.text, 'from host');
  assert.equal(readFileSync(join(vol, 'out.txt'), 'utf8'), 'from-guest\n');
  const again = spec('lk-cow-a', { command: '/bin/cat', args: ['/etc/marker'], stateDir: a.stateDir });
  assert.equal((await (await backend.start(again)).wait()).exitCode, 0);
  assert.equal(again.stdout.text, 'mine\n', 'writes persist across restarts of the service');
  const b = spec('lk-cow-b', { command: '/bin/cat', args: ['/etc/marker'] });
  assert.equal((await (await backend.start(b)).wait()).exitCode, 1, 'another service does not see them');
});
