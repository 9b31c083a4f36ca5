import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMonocoreError } from '../errors/index.js';
import { parseImageConfig, parseManifest } from './manifest.js';
import { runtimeConfig } from './runtime-config.js';

const digest = `sha256:${'a'.repeat(64)}`;
const bytes = (o: unknown) => Buffer.from(JSON.stringify(o));
const manifest = (extra: Record<string, unknown> = {}) => ({
  schemaVersion: 2,
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: 10 },
  layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: 20 }],
  ...extra,
});

test('parseManifest: OCI manifest without mediaType is recognised by shape; an index too', () => {
  const m = parseManifest(bytes(manifest()), undefined, 'm');
  assert.equal(m.kind, 'manifest');
  const i = parseManifest(bytes({ schemaVersion: 2, manifests: [] }), 'application/json', 'i');
  assert.equal(i.kind, 'index');
  const docker = parseManifest(bytes(manifest({ mediaType: 'application/vnd.docker.distribution.manifest.v2+json' })), undefined, 'd');
  assert.equal(docker.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
});

test('parseManifest rejects schema 1, artifacts, unknown layer types and bad digests, naming the field', () => {
  const cases: Array<[unknown, string | undefined, string, RegExp]> = [
    [{ schemaVersion: 1, name: 'x' }, 'application/vnd.docker.distribution.manifest.v1+prettyjws', 'MC_OCI_UNSUPPORTED_MEDIA_TYPE', /schema 1/],
    [manifest({ config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', digest, size: 1 } }), undefined, 'MC_OCI_UNSUPPORTED_MEDIA_TYPE', /artifact/],
    [manifest({ layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+enc', digest, size: 1 }] }), undefined, 'MC_OCI_UNSUPPORTED_MEDIA_TYPE', /layers\[0\]/],
    [manifest({ layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: 'md5:abc', size: 1 }] }), undefined, 'MC_OCI_INVALID_MANIFEST', /layers\.0\.digest/],
    [manifest({ layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: -1 }] }), undefined, 'MC_OCI_INVALID_MANIFEST', /layers\.0\.size/],
  ];
  for (const [body, ct, code, re] of cases) {
    assert.throws(() => parseManifest(bytes(body), ct, 'what'), (e: unknown) => isMonocoreError(e) && e.code === code && re.test(e.message));
  }
  assert.throws(() => parseManifest(Buffer.from('{not json'), undefined, 'what'), (e: unknown) => isMonocoreError(e, 'MC_OCI_INVALID_MANIFEST'));
});

test('runtimeConfig takes env/entrypoint/cmd/workdir/user, tolerating nulls', () => {
  const cfg = parseImageConfig(bytes({ architecture: 'amd64', os: 'linux', config: { Env: null, Cmd: ['sh'], WorkingDir: '', User: 'app' } }), 'c');
  assert.deepEqual(runtimeConfig(cfg), { env: [], entrypoint: [], cmd: ['sh'], user: 'app' });
  assert.deepEqual(runtimeConfig(parseImageConfig(bytes({}), 'c')), { env: [], entrypoint: [], cmd: [] });
});
