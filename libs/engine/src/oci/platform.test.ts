import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMonocoreError } from '../errors/index.js';
import type { Descriptor } from './manifest.js';
import { formatPlatform, parsePlatform, platformMatches, selectPlatform } from './platform.js';

const d = (n: number, platform?: Descriptor['platform'], annotations?: Record<string, string>): Descriptor => ({
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: `sha256:${String(n).repeat(64).slice(0, 64)}`,
  size: 100,
  ...(platform ? { platform } : {}),
  ...(annotations ? { annotations } : {}),
});

test('parsePlatform normalises and rejects malformed strings', () => {
  assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(parsePlatform('Linux/x86_64'), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(parsePlatform('linux/aarch64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  for (const bad of ['amd64', 'linux/', '/amd64', 'linux/amd64/v8/x', 'linux/am d64']) {
    assert.throws(() => parsePlatform(bad), (e: unknown) => isMonocoreError(e, 'MC_OCI_INVALID_PLATFORM') && e.message.includes(bad));
  }
  assert.equal(formatPlatform({ os: 'linux', architecture: 'arm', variant: 'v7' }), 'linux/arm/v7');
});

test('platformMatches: arm64 without a variant is v8; no wanted variant accepts any', () => {
  assert.ok(platformMatches({ os: 'linux', architecture: 'arm64', variant: 'v8' }, { os: 'linux', architecture: 'arm64' }));
  assert.ok(platformMatches({ os: 'linux', architecture: 'arm' }, { os: 'linux', architecture: 'arm', variant: 'v7' }));
  assert.ok(!platformMatches({ os: 'linux', architecture: 'arm', variant: 'v6' }, { os: 'linux', architecture: 'arm', variant: 'v7' }));
  assert.ok(!platformMatches({ os: 'linux', architecture: 'amd64' }, { os: 'windows', architecture: 'amd64' }));
});

test('selectPlatform prefers the exact variant, skips attestations, lists what exists', () => {
  const entries = [
    d(1, { os: 'linux', architecture: 'arm', variant: 'v6' }),
    d(2, { os: 'linux', architecture: 'arm', variant: 'v7' }),
    d(3, { os: 'linux', architecture: 'amd64' }),
    d(4, { os: 'unknown', architecture: 'unknown' }, { 'vnd.docker.reference.type': 'attestation-manifest' }),
  ];
  assert.equal(selectPlatform(entries, { os: 'linux', architecture: 'arm', variant: 'v7' }, 'x').digest, entries[1]!.digest);
  assert.equal(selectPlatform(entries, { os: 'linux', architecture: 'amd64' }, 'x').digest, entries[2]!.digest);
  assert.throws(
    () => selectPlatform(entries, { os: 'linux', architecture: 'riscv64' }, 'img'),
    (e: unknown) =>
      isMonocoreError(e, 'MC_OCI_NO_MATCHING_PLATFORM') &&
      JSON.stringify(e.details.available) === JSON.stringify(['linux/arm/v6', 'linux/arm/v7', 'linux/amd64']) &&
      e.message.startsWith('img: no image for platform linux/riscv64'),
  );
});
