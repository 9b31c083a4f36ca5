import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedService } from '../config/index.js';
import { MonocoreError } from '../errors/index.js';
import { buildVmSpec, groupNetwork } from './vm-spec-builder.js';

const service = (extra: Partial<ResolvedService> = {}): ResolvedService => ({
  name: 'web',
  localOnly: true,
  args: [],
  cpus: 2,
  ram: 256,
  volumes: [{ host: '/srv/data', guest: '/data' }],
  envs: [
    { key: 'MODE', value: 'prod' },
    { key: 'PATH', value: '/opt/bin:/bin' },
  ],
  dependsOn: [],
  restart: 'on-failure',
  maxRestarts: 5,
  ...extra,
});
const image = {
  rootfs: '/images/abc',
  config: { env: ['PATH=/usr/bin', 'LANG=C.UTF-8'], entrypoint: ['/entry.sh'], cmd: ['serve', '--port', '80'], workingDir: '/app' },
};
const base = { stateDir: '/state/web', network: { mode: 'none' as const } };

test("Docker's command rules: command overrides Entrypoint/Cmd; args replace Cmd", () => {
  const own = buildVmSpec({ ...base, service: service({ command: '/bin/sh', args: ['-c', 'echo "a b"'] }), image });
  assert.equal(own.command, '/bin/sh');
  assert.deepEqual(own.args, ['-c', 'echo "a b"']);
  const fromImage = buildVmSpec({ ...base, service: service(), image });
  assert.equal(fromImage.command, '/entry.sh');
  assert.deepEqual(fromImage.args, ['serve', '--port', '80']);
  const argsOnly = buildVmSpec({ ...base, service: service({ args: ['worker'] }), image });
  assert.deepEqual([argsOnly.command, ...argsOnly.args], ['/entry.sh', 'worker']);
});

test('env: the image first, the service wins per key; workdir, resources, volumes and ports carried over', () => {
  const spec = buildVmSpec({ ...base, service: service({ port: { host: 8080, guest: 80 } }), image });
  assert.deepEqual(spec.env, ['PATH=/opt/bin:/bin', 'LANG=C.UTF-8', 'MODE=prod']);
  assert.equal(spec.workdir, '/app');
  assert.equal(buildVmSpec({ ...base, service: service({ workdir: '/srv' }), image }).workdir, '/srv');
  assert.equal(spec.cpus, 2);
  assert.equal(spec.ramMib, 256);
  assert.equal(spec.diskMib, undefined, 'no disk in the config: the backend default');
  assert.equal(buildVmSpec({ ...base, service: service({ disk: 1024 }), image }).diskMib, 1024);
  assert.equal(spec.rootfs, '/images/abc');
  assert.deepEqual(spec.volumes, [{ host: '/srv/data', guest: '/data' }]);
  assert.deepEqual(spec.ports, [{ host: 8080, guest: 80 }]);
  assert.equal(spec.hostname, 'web');
  assert.equal(spec.user, undefined, 'no image User: root');
  assert.equal(buildVmSpec({ ...base, service: service(), image: { ...image, config: { ...image.config, user: 'app:app' } } }).user, 'app:app');
});

test('nothing to run: MC_ORCH_NO_COMMAND naming the service', () => {
  assert.throws(
    () => buildVmSpec({ ...base, service: service(), image: { ...image, config: { env: [], entrypoint: [], cmd: [] } } }),
    (e: unknown) => e instanceof MonocoreError && e.code === 'MC_ORCH_NO_COMMAND' && /"web"/.test(e.message),
  );
});

test('group network: deterministic addresses and a peer table every member agrees on', () => {
  const a = groupNetwork('g', ['db', 'web', 'api'], 'web', true);
  const b = groupNetwork('g', ['web', 'api', 'db'], 'db', true);
  assert.deepEqual(a, { mode: 'group', group: 'g', address: '10.88.0.4/24', peers: { api: '10.88.0.2', db: '10.88.0.3' }, localOnly: true });
  assert.equal(b.mode === 'group' && b.peers.web, '10.88.0.4');
});
