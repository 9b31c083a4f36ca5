import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeGuestSpec, encodeMainCommand, parseGuestEvent } from './guest-protocol.js';

test('encodeGuestSpec: NUL-separated records keep every byte of argv/env', () => {
  const buf = encodeGuestSpec({
    argv: ['/bin/sh', '', 'a b', 'x\ny', 'ü=✓'],
    env: ['A=1', 'EMPTY='],
    workdir: '/w',
    user: 'app:5678',
    hostname: 'h',
    disk: true,
    volumes: [{ tag: 'vol0', guest: '/data dir', readOnly: true }],
    nics: [{ mac: '52:54:0a:58:00:02', cidr: '10.88.0.2/24' }],
    hosts: ['10.88.0.3\tb'],
    rlimits: [{ resource: 7, soft: 10, hard: -1 }],
  });
  const nl = buf.indexOf(0x0a);
  const header = buf.subarray(0, nl).toString();
  const body = buf.subarray(nl + 1);
  assert.equal(header, `MCSPEC1 ${body.length}`);
  const records = body.toString('utf8').split('\0').slice(0, -1);
  assert.deepEqual(records, [
    'arg=/bin/sh', 'arg=', 'arg=a b', 'arg=x\ny', 'arg=ü=✓', 'env=A=1', 'env=EMPTY=', 'workdir=/w', 'user=app:5678', 'hostname=h', 'disk=1',
    'vol=vol0 ro /data dir', 'nic=52:54:0a:58:00:02 10.88.0.2/24 -', 'host=10.88.0.3\tb', 'rlimit=7 10 -1',
  ]);
  assert.throws(() => encodeGuestSpec({ argv: ['a\0b'], env: [], workdir: '/', hostname: 'h', disk: false, volumes: [], nics: [], hosts: [] }), /NUL/);
});

test('parseGuestEvent: control lines', () => {
  assert.deepEqual(parseGuestEvent('boot 1.500'), { type: 'boot', uptime: 1.5 });
  assert.deepEqual(parseGuestEvent('started 2.000'), { type: 'started', uptime: 2 });
  assert.deepEqual(parseGuestEvent('exit 137 3.25'), { type: 'exit', code: 137, uptime: 3.25 });
  assert.deepEqual(parseGuestEvent('error mount rootfs: No such device'), { type: 'error', message: 'mount rootfs: No such device' });
  assert.equal(parseGuestEvent('exit abc'), undefined);
  assert.equal(parseGuestEvent('hello'), undefined);
});

test('encodeGuestSpec: no user record for root (unset or empty)', () => {
  const base = { argv: ['/bin/true'], env: [], workdir: '/', hostname: 'h', disk: false, volumes: [], nics: [], hosts: [] };
  for (const user of [undefined, '']) {
    const body = encodeGuestSpec({ ...base, ...(user !== undefined ? { user } : {}) }).toString('utf8');
    assert.doesNotMatch(body, /user=/);
  }
});

test('encodeGuestSpec: agent=1 starts the guest agent; a sandbox has sandbox=1 and no arg= records', () => {
  const base = { env: ['A=1'], workdir: '/', hostname: 'h', disk: false, volumes: [], nics: [], hosts: [] };
  const records = (buf: Buffer): string[] => buf.subarray(buf.indexOf(0x0a) + 1).toString('utf8').split('\0').slice(0, -1);
  assert.deepEqual(records(encodeGuestSpec({ ...base, argv: [], agent: true, sandbox: true })).slice(0, 3), ['sandbox=1', 'agent=1', 'env=A=1']);
  const cmd = records(encodeGuestSpec({ ...base, argv: ['/bin/true'], agent: true }));
  assert.ok(cmd.includes('agent=1') && !cmd.includes('sandbox=1'));
  assert.ok(!records(encodeGuestSpec({ ...base, argv: ['/bin/true'] })).includes('agent=1'));
});

test('encodeMainCommand: `main <length>` then the records a template leaves out; every byte kept; root has no user record', () => {
  const buf = encodeMainCommand({ argv: ['/bin/sh', '-c', 'echo "a b"', ''], env: ['A=1', 'NL=x\ny'], workdir: '/srv dir', user: '1000:1000' });
  const nl = buf.indexOf(0x0a);
  const body = buf.subarray(nl + 1);
  assert.equal(buf.subarray(0, nl).toString(), `main ${body.length}`);
  assert.deepEqual(body.toString('utf8').split('\0').slice(0, -1), [
    'arg=/bin/sh', 'arg=-c', 'arg=echo "a b"', 'arg=', 'env=A=1', 'env=NL=x\ny', 'workdir=/srv dir', 'user=1000:1000',
  ]);
  const root = encodeMainCommand({ argv: ['true'], env: [], workdir: '/', user: '' });
  assert.ok(!root.toString().includes('user='));
  assert.throws(() => encodeMainCommand({ argv: [], env: [], workdir: '/' }), /argv is empty/);
  assert.throws(() => encodeMainCommand({ argv: ['a'], env: ['B=\0'], workdir: '/' }), /NUL/);
});

test('discard=1 travels in the boot spec and in a main command only when the writable layer is discarded', () => {
  const records = (b: Buffer): string[] => b.subarray(b.indexOf(0x0a) + 1).toString('utf8').split('\0');
  assert.ok(records(encodeMainCommand({ argv: ['true'], env: [], workdir: '/', discardDisk: true })).includes('discard=1'));
  assert.ok(!records(encodeMainCommand({ argv: ['true'], env: [], workdir: '/' })).includes('discard=1'));
  const spec = { argv: ['true'], env: [], workdir: '/', hostname: 'h', disk: true, volumes: [], nics: [], hosts: [] };
  assert.ok(records(encodeGuestSpec({ ...spec, discardDisk: true })).includes('discard=1'));
  assert.ok(!records(encodeGuestSpec(spec)).includes('discard=1'));
});
