import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMonocoreError } from '@monocore/engine/errors';
import { parseCpOperand } from './cp.js';
import { createRequest } from './sandbox.js';

test('cp operands: TARGET:/path for sandbox ids and service names, anything else is local', () => {
  assert.deepEqual(parseCpOperand('sb-0123456789ab:/work/x'), { kind: 'remote', target: 'sb-0123456789ab', path: '/work/x' });
  assert.deepEqual(parseCpOperand('web:/srv/'), { kind: 'remote', target: 'web', path: '/srv/' });
  assert.deepEqual(parseCpOperand('./a:b'), { kind: 'local', path: './a:b' });
  assert.deepEqual(parseCpOperand('/abs/a:b'), { kind: 'local', path: '/abs/a:b' });
  assert.deepEqual(parseCpOperand('Upper:/x'), { kind: 'local', path: 'Upper:/x' }, 'not a service name');
  assert.deepEqual(parseCpOperand('plain'), { kind: 'local', path: 'plain' });
  assert.throws(() => parseCpOperand('web:relative'), (e: unknown) => isMonocoreError(e, 'MC_USAGE') && /must be absolute/.test(e.message));
});

test('sandbox create flags become the API request (only what was given)', () => {
  assert.deepEqual(createRequest('busybox', { env: [], wait: true }), { image: 'busybox' });
  assert.deepEqual(
    createRequest('python:3.12', { env: ['A=1', 'HOME_COPY'], cpus: '2', ram: '1024', disk: '2048', timeout: '30m', idleTimeout: '90s', net: 'outbound', wait: true, workdir: '/w', user: 'nobody' }, { HOME_COPY: 'h' }),
    { image: 'python:3.12', cpus: 2, ram: 1024, disk: 2048, env: { A: '1', HOME_COPY: 'h' }, timeout_s: 1800, idle_timeout_s: 90, network: 'outbound', workdir: '/w', user: 'nobody' },
  );
  assert.throws(() => createRequest('x', { env: [], ram: '32', wait: true }), (e: unknown) => isMonocoreError(e, 'MC_USAGE') && /--ram: "32"/.test(e.message));
  assert.throws(() => createRequest('x', { env: [], disk: '10', wait: true }), (e: unknown) => isMonocoreError(e, 'MC_USAGE') && /--disk: "10"/.test(e.message));
});

test('sandbox create --allow: the monocore.toml form of network; needs --net outbound; a bad entry is a usage error naming it', () => {
  assert.deepEqual(createRequest('python:3.12', { env: [], net: 'outbound', allow: ['pypi.org', '*.pythonhosted.org', '203.0.113.0/24'], wait: true }), {
    image: 'python:3.12',
    network: { outbound: true, allow: ['pypi.org', '*.pythonhosted.org', '203.0.113.0/24'] },
  });
  assert.deepEqual(createRequest('python:3.12', { env: [], net: 'outbound', allow: [], wait: true }), { image: 'python:3.12', network: 'outbound' });
  for (const net of [undefined, 'none'] as const) {
    assert.throws(
      () => createRequest('x', { env: [], ...(net ? { net } : {}), allow: ['pypi.org'], wait: true }),
      (e: unknown) => isMonocoreError(e, 'MC_USAGE') && /--allow .*needs --net outbound/.test(e.message),
    );
  }
  assert.throws(
    () => createRequest('x', { env: [], net: 'outbound', allow: ['pypi.org', 'localhost'], wait: true }),
    (e: unknown) => isMonocoreError(e, 'MC_USAGE') && /^--allow\[1\]: "localhost" is a single-label name/.test(e.message),
  );
});
