import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MonocoreError } from '../errors/index.js';
import { RegistryPolicy, classifyAddress } from './registry-policy.js';

test('classifyAddress: link-local, loopback, private and public, also as IPv4 inside IPv6', () => {
  for (const a of ['169.254.169.254', '169.254.0.1', 'fe80::1', '::ffff:169.254.169.254', '::ffff:a9fe:a9fe']) assert.equal(classifyAddress(a), 'link-local', a);
  for (const a of ['127.0.0.1', '127.9.9.9', '::1', '0.0.0.0', '::ffff:127.0.0.1', '::']) assert.equal(classifyAddress(a), 'loopback', a);
  for (const a of ['10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '100.100.100.200', 'fd00::1', '::ffff:10.0.0.1', '224.0.0.1', '64:ff9b::a9fe:a9fe'])
    assert.equal(classifyAddress(a), 'private', a);
  for (const a of ['8.8.8.8', '172.32.0.1', '198.18.0.2', '2001:db8::1', '1.1.1.1']) assert.equal(classifyAddress(a), 'public', a);
});

test('RegistryPolicy: link-local never, even when listed; loopback by flag; private only when listed by name or range', async () => {
  const strict = RegistryPolicy.fromEnv('', { allowLoopback: false });
  const refused = async (p: RegistryPolicy, ref: string): Promise<MonocoreError> => {
    const err = await p.checkReference(ref, 'service[0].base').then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof MonocoreError && err.code === 'MC_OCI_REGISTRY_REFUSED', `${ref} is refused (got ${String(err)})`);
    assert.match(err.message, /^service\[0\]\.base: image "/);
    assert.ok(err.message.includes(ref), 'the message names the reference');
    return err;
  };
  await refused(strict, '169.254.169.254/latest/meta-data:x');
  await refused(strict, '[fe80::1]:5000/x:y');
  await refused(strict, '127.0.0.1:5000/x');
  await refused(strict, 'localhost:5000/x'); // a name: resolved by the system resolver to loopback
  await refused(strict, '10.0.0.5:6379/x');
  await refused(strict, '[::ffff:a9fe:a9fe]:80/x');
  await strict.checkReference('8.8.8.8/x'); // a public address literal

  const listed = RegistryPolicy.fromEnv('10.0.0.0/8, 192.168.1.20, 169.254.0.0/16 127.0.0.1:15000', { allowLoopback: false });
  await listed.checkReference('10.0.0.5:6379/x');
  await listed.checkReference('192.168.1.20/x');
  await listed.checkReference('127.0.0.1:15000/x');
  await refused(listed, '127.0.0.1:15001/x'); // another port of a listed host:port
  await refused(listed, '192.168.1.21/x');
  const linkLocal = await refused(listed, '169.254.169.254/x');
  assert.match(linkLocal.message, /link-local.*never allowed/);

  const loopbackApi = RegistryPolicy.fromEnv(undefined, { allowLoopback: true });
  await loopbackApi.checkReference('127.0.0.1:15000/x');
  await loopbackApi.checkReference('localhost:15000/x');
  await refused(loopbackApi, '172.16.0.1/x');
});

test('RegistryPolicy.check lists every refused reference with its field', async () => {
  const p = RegistryPolicy.fromEnv('', { allowLoopback: false });
  const err = await p
    .check([
      { field: 'service[0].base', reference: '8.8.8.8/ok' },
      { field: 'service[1].base', reference: '169.254.169.254/a' },
      { field: 'service[2].base', reference: '10.1.1.1/b' },
    ])
    .then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof MonocoreError && err.code === 'MC_OCI_REGISTRY_REFUSED');
  assert.deepEqual(
    (err.details.issues as Array<{ path: string }>).map((i) => i.path),
    ['service[1].base', 'service[2].base'],
  );
  assert.equal(err.httpStatus, 400);
});

test('RegistryPolicy.fromEnv: bad entries are refused naming the entry', () => {
  assert.throws(() => RegistryPolicy.fromEnv('10.0.0.0/40', { allowLoopback: false }), /"10\.0\.0\.0\/40"/);
  assert.throws(() => RegistryPolicy.fromEnv('host:port', { allowLoopback: false }), /"host:port"/);
});
