import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMonocoreError } from '@monocore/engine';
import { VolumePolicy } from './volume-policy.js';

test('VolumePolicy: only paths inside an allowed root, after resolving symlinks of existing prefixes', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-volpol-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, 'root');
  mkdirSync(join(root, 'data'), { recursive: true });
  symlinkSync('/etc', join(root, 'etc-link'));
  symlinkSync(join(root, 'data'), join(dir, 'outside-link-to-data'));
  const policy = new VolumePolicy([root]);

  assert.equal(policy.allows(root), true);
  assert.equal(policy.allows(join(root, 'data')), true);
  assert.equal(policy.allows(join(root, 'not', 'yet', 'created')), true, 'a path to be created under the root');
  assert.equal(policy.allows(`${root}-sibling`), false, 'a sibling sharing the prefix is outside');
  assert.equal(policy.allows(join(root, '..', 'x')), false);
  assert.equal(policy.allows(join(root, 'etc-link')), false, 'a symlink in the root pointing out');
  assert.equal(policy.allows(join(root, 'etc-link', 'passwd')), false);
  assert.equal(policy.allows(join(dir, 'outside-link-to-data')), false, 'the path as written must be inside too');
  assert.equal(policy.allows('relative/path'), false);
  assert.equal(new VolumePolicy([]).allows('/tmp'), false, 'no roots: nothing allowed');
});

test('VolumePolicy.check names every offending field of a config body', () => {
  const policy = new VolumePolicy(['/srv/monocore']);
  assert.doesNotThrow(() => policy.check({ service: [{ name: 'a', volumes: ['/srv/monocore/a:/data'] }] }));
  assert.doesNotThrow(() => policy.check({ service: [{ name: 'a', group_volumes: [{ name: 'v', path: 'rel:/x' }] }] }));
  try {
    policy.check({
      service: [{ name: 'a', volumes: ['/srv/monocore/ok', '/home/me:/h'], group_volumes: [{ name: 'v', path: '/etc:/x' }] }],
      group: [{ name: 'g', volume: [{ name: 'v', path: '/' }] }],
    });
    assert.fail('expected a rejection');
  } catch (err) {
    assert.ok(isMonocoreError(err, 'MC_API_VOLUME_NOT_ALLOWED'));
    const issues = err.details.issues as Array<{ path: string; message: string }>;
    assert.deepEqual(issues.map((i) => i.path), ['service[0].volumes[1]', 'service[0].group_volumes[0].path', 'group[0].volume[0].path']);
    assert.match(issues[0]?.message ?? '', /"\/home\/me".*\/srv\/monocore/);
  }
});

test('VolumePolicy.fromEnv splits on ":" and ",", and refuses relative roots', () => {
  assert.deepEqual(VolumePolicy.fromEnv(undefined).roots, []);
  assert.deepEqual(VolumePolicy.fromEnv('').roots, []);
  assert.equal(VolumePolicy.fromEnv('/srv/a:/srv/b, /srv/c').roots.length, 3);
  assert.throws(() => VolumePolicy.fromEnv('srv/a'), /must be an absolute path/);
});
