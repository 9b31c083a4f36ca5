import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isUnder, joinUnder, parseVolumeMapping, tryParseVolumeMapping } from './volume-mapping.js';

test('tryParseVolumeMapping: "/path" maps the same path, "/host:/guest" two paths', () => {
  assert.deepEqual(tryParseVolumeMapping('/data'), { ok: true, value: { host: '/data', guest: '/data' } });
  assert.deepEqual(tryParseVolumeMapping('/srv/x:/var/lib/x'), { ok: true, value: { host: '/srv/x', guest: '/var/lib/x' } });
  assert.deepEqual(tryParseVolumeMapping('/:/host'), { ok: true, value: { host: '/', guest: '/host' } });
});

test('tryParseVolumeMapping rejects relative, "..", "." and empty components, extra colons', () => {
  const cases: [string, string][] = [
    ['', 'volume "" must be "/path" or "/host:/guest"'],
    ['/a:/b:/c', 'volume "/a:/b:/c" must be "/path" or "/host:/guest"'],
    ['data', 'volume "data": host path "data" must be absolute (start with "/")'],
    ['/data:data', 'volume "/data:data": guest path "data" must be absolute (start with "/")'],
    [':/data', 'volume ":/data": host path is empty'],
    ['/data:', 'volume "/data:": guest path is empty'],
    ['/a/../etc', 'volume "/a/../etc": host path "/a/../etc" must not contain ".."'],
    ['/x:/..', 'volume "/x:/..": guest path "/.." must not contain ".."'],
    ['/a/./b', 'volume "/a/./b": host path "/a/./b" must not contain "." components'],
    ['/a//b', 'volume "/a//b": host path "/a//b" has an empty component ("//" or a trailing "/")'],
    ['/a/', 'volume "/a/": host path "/a/" has an empty component ("//" or a trailing "/")'],
  ];
  for (const [input, error] of cases) assert.deepEqual(tryParseVolumeMapping(input), { ok: false, error }, input);
});

test('tryParseVolumeMapping with relativeHost (group_volumes) allows a relative host side only', () => {
  assert.deepEqual(tryParseVolumeMapping('logs:/var/log', { relativeHost: true }), {
    ok: true,
    value: { host: 'logs', guest: '/var/log' },
  });
  assert.equal(tryParseVolumeMapping('../up:/x', { relativeHost: true }).ok, false);
  assert.equal(tryParseVolumeMapping('logs', { relativeHost: true }).ok, false, 'guest side must stay absolute');
});

test('joinUnder and isUnder keep paths inside a base', () => {
  assert.equal(joinUnder('/srv/shared', 'logs'), '/srv/shared/logs');
  assert.equal(joinUnder('/', 'logs'), '/logs');
  assert.equal(joinUnder('/srv/shared', '/srv/shared/a'), '/srv/shared/a');
  assert.ok(isUnder('/srv/shared', '/srv/shared'));
  assert.ok(isUnder('/srv/shared', '/srv/shared/a'));
  assert.ok(!isUnder('/srv/shared', '/srv/shared2'));
  assert.ok(!isUnder('/srv/shared', '/etc'));
  assert.ok(isUnder('/', '/etc'));
});

test('parseVolumeMapping returns the mapping or throws MC_CONFIG_INVALID with the reason', () => {
  assert.deepEqual(parseVolumeMapping('/a:/b'), { host: '/a', guest: '/b' });
  assert.throws(() => parseVolumeMapping('/a/..'), { code: 'MC_CONFIG_INVALID', message: 'volume "/a/..": host path "/a/.." must not contain ".."' });
});
