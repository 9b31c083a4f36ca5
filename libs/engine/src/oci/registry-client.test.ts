import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLoopbackHost, parseWwwAuthenticate } from './registry-client.js';
import { defaultCredentialsResolver, normalizeRegistryHost } from './registry-credentials.js';

test('parseWwwAuthenticate reads quoted params (with commas) and both schemes', () => {
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push"'), {
    scheme: 'bearer',
    params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:a/b:pull,push' },
  });
  assert.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm"'), { scheme: 'basic', params: { realm: 'Registry Realm' } });
  assert.equal(parseWwwAuthenticate('Negotiate abc'), undefined);
});

test('isLoopbackHost', () => {
  for (const h of ['127.0.0.1:5000', '127.1.2.3', 'localhost:5000', '[::1]:5000', 'foo.localhost']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['10.0.0.1:5000', 'example.com', '[::2]:5000', '128.0.0.1']) assert.ok(!isLoopbackHost(h), h);
});

test('credentials: explicit > MONOCORE_REGISTRY_AUTH > docker config.json, with docker.io key forms', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mc-cred-'));
  try {
    await writeFile(
      join(dir, 'config.json'),
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw:with:colons').toString('base64') },
          'ghcr.io': { auth: Buffer.from('gh:1').toString('base64') },
          'https://quay.io': { username: 'q', password: '2' },
        },
        credsStore: 'desktop',
      }),
    );
    const env = { DOCKER_CONFIG: dir, MONOCORE_REGISTRY_AUTH: JSON.stringify({ 'ghcr.io': { username: 'env', password: 'e' } }) };
    const r = defaultCredentialsResolver({ 'quay.io': { username: 'explicit', password: 'x' } }, env);
    assert.deepEqual(r('docker.io'), { username: 'hub', password: 'pw:with:colons' });
    assert.deepEqual(r('ghcr.io'), { username: 'env', password: 'e' });
    assert.deepEqual(r('quay.io'), { username: 'explicit', password: 'x' });
    assert.equal(r('example.com'), undefined);
    assert.equal(normalizeRegistryHost('https://Registry-1.docker.io/v2/'), 'docker.io');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
