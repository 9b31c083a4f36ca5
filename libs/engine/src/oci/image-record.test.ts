import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkImageRecord } from './image-record.js';

const record = {
  reference: 'example.test/a:1',
  platform: 'linux/amd64',
  digest: `sha256:${'a'.repeat(64)}`,
  manifestDigest: `sha256:${'a'.repeat(64)}`,
  manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
  configDigest: `sha256:${'b'.repeat(64)}`,
  config: { env: ['PATH=/bin'], entrypoint: [], cmd: ['sh'], workingDir: '/srv' },
  layers: [{ digest: `sha256:${'c'.repeat(64)}`, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: 10 }],
  size: 10,
  rootfs: '/x/rootfs',
  blobs: [`sha256:${'b'.repeat(64)}`],
  pulledAt: '2026-12-07T00:00:00.000Z',
  source: 'registry',
};

test('checkImageRecord: a whole record passes as it is', () => {
  const r = checkImageRecord(record);
  assert.ok(r.ok);
  assert.deepEqual(r.record, record);
});

test('checkImageRecord: each bad field is named', () => {
  const bad = (patch: Record<string, unknown>): string => {
    const r = checkImageRecord({ ...record, ...patch });
    assert.ok(!r.ok);
    return r.error;
  };
  assert.match(bad({ reference: 1 }), /^reference: expected a string/);
  assert.match(bad({ size: '10' }), /^size: expected a number/);
  assert.match(bad({ source: 'disk' }), /^source:/);
  assert.match(bad({ blobs: [1] }), /^blobs:/);
  assert.match(bad({ config: { ...record.config, cmd: 'sh' } }), /^config\.cmd:/);
  assert.match(bad({ config: { ...record.config, user: 0 } }), /^config\.user:/);
  assert.match(bad({ layers: [{ digest: 'x', mediaType: 'y' }] }), /^layers\[0\]:/);
  assert.match(bad({ created: 5 }), /^created:/);
  assert.equal((checkImageRecord([]) as { error: string }).error, 'record: expected an object');
  assert.equal(checkImageRecord(null).ok, false);
});
