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

test('groups asking for outbound network are accepted (the worker provides it: docs/NETWORK.md)', () => {
  const services = resolve({
    service: [{ name: 'a', base: 'busybox', group: 'open' }],
    group: [{ name: 'open', local_only: false }],
  });
  assert.doesNotThrow(() => checkDeployable(services));
});
