import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveServices, validateConfig } from '../config/index.js';
import { checkDeployable } from './check-deployable.js';

const resolve = (config: unknown) => resolveServices(validateConfig(config));

test('services with an image on local-only groups (or no group) are deployable', () => {
  checkDeployable(
    resolve({
      service: [
        { name: 'a', base: 'busybox', group: 'g' },
        { name: 'b', base: 'busybox' },
      ],
      group: [{ name: 'g' }],
    }),
  );
});

test('every service without a base image is named', () => {
  assert.throws(() => checkDeployable(resolve({ service: [{ name: 'a' }, { name: 'b', base: 'busybox' }, { name: 'c' }] })), {
    code: 'MC_ORCH_NO_IMAGE',
    message: /^service "a", service "c" have no base image/,
  });
});

test('groups asking for outbound network are named once each', () => {
  const services = resolve({
    service: [
      { name: 'a', base: 'busybox', group: 'open' },
      { name: 'b', base: 'busybox', group: 'open' },
      { name: 'c', base: 'busybox', group: 'closed' },
    ],
    group: [{ name: 'open', local_only: false }, { name: 'closed' }],
  });
  assert.throws(() => checkDeployable(services), (err: unknown) => {
    const e = err as { code: string; message: string; details: { groups: string[] } };
    assert.equal(e.code, 'MC_VM_NETWORK_UNSUPPORTED');
    assert.match(e.message, /^group "open": local_only = false/);
    assert.deepEqual(e.details.groups, ['open']);
    return true;
  });
});
