// The reference deployment (docker-compose.yml + Dockerfile) stays consistent with the
// code: these checks read the files and compare them with the apps' package.json bins and the
// environment variables the code actually reads. test/compose/compose.test.ts starts it for real.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from '../support/env.js';

interface ComposeService {
  image?: string;
  build?: { context: string; args?: Record<string, string> };
  command?: string[];
  user?: string;
  init?: boolean;
  privileged?: boolean;
  cap_drop?: string[];
  cap_add?: string[];
  healthcheck?: { test: string[] };
  stop_grace_period?: string;
  environment?: Record<string, string>;
  volumes?: string[];
  devices?: string[];
  depends_on?: Record<string, { condition: string }>;
}
interface Compose {
  version?: unknown;
  name?: unknown;
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const compose = parse(readFileSync(join(repoRoot, 'docker-compose.yml'), 'utf8'), { merge: true }) as Compose;
const dockerfile = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8');
const rootPkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { workspaces: string[] };

function service(name: string): ComposeService {
  const s = compose.services[name];
  assert.ok(s, `docker-compose.yml has no service "${name}"`);
  return s;
}

/** Every .ts source under a directory (not tests), concatenated. */
function sources(dir: string): string {
  let out = '';
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out += sources(path);
    else if (entry.endsWith('.ts') && !entry.endsWith('.test.ts')) out += readFileSync(path, 'utf8');
  }
  return out;
}

test('compose runs each app through the bin its package.json declares', () => {
  for (const [svc, app] of [['api', 'api'], ['worker', 'worker']] as const) {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'apps', app, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    const command = service(svc).command;
    assert.ok(command?.[0], `${svc}: no command`);
    assert.ok(pkg.bin[command[0]], `${svc}: "${command[0]}" is not a bin of apps/${app} (${Object.keys(pkg.bin).join(', ')})`);
    assert.equal(pkg.bin[command[0]], './dist/main.js');
    statSync(join(repoRoot, 'apps', app, 'src', 'main.ts'));
  }
});

test('redis persists (AOF) and never evicts; every app reaches it by service name after it is healthy', () => {
  const redis = service('redis').command?.join(' ') ?? '';
  assert.match(redis, /--appendonly yes/);
  assert.match(redis, /--maxmemory-policy noeviction/);
  for (const svc of ['api', 'worker']) {
    assert.equal(service(svc).environment?.MONOCORE_REDIS_URL, 'redis://redis:6379', svc);
    assert.equal(service(svc).depends_on?.redis?.condition, 'service_healthy', svc);
  }
});

test('valid for docker-compose 1.29 and Compose v2: no version key, no top-level name', () => {
  assert.equal(compose.version, undefined);
  assert.equal(compose.name, undefined);
});

test('each worker replica is a host of its own: no fixed host id, MONOCORE_HOME in a volume per container', () => {
  const worker = service('worker');
  assert.equal(worker.environment?.MONOCORE_HOST_ID, undefined, 'the hostname (the container id) is the host id');
  const home = worker.environment?.MONOCORE_HOME;
  assert.ok(home);
  assert.ok(worker.volumes?.includes(home), `an anonymous volume at ${home} (one per replica), not a named one they would share`);
  assert.equal(worker.devices, undefined, '/dev/kvm only through deploy/compose/kvm.yml (a missing device fails the start)');
  const kvm = parse(readFileSync(join(repoRoot, 'deploy/compose/kvm.yml'), 'utf8')) as Compose;
  assert.deepEqual(kvm.services.worker?.devices, ['/dev/kvm:/dev/kvm']);
});

test('privileges are explicit: no privileged, every default capability dropped, the worker\'s few added back; API and Redis not root', () => {
  for (const [name, svc] of Object.entries(compose.services)) assert.notEqual(svc.privileged, true, name);
  assert.deepEqual(service('api').cap_drop, ['ALL']);
  assert.equal(service('api').user, 'node');
  assert.equal(service('redis').user, 'redis');
  const worker = service('worker');
  assert.deepEqual(worker.cap_drop, ['ALL']);
  for (const cap of ['SETUID', 'SETGID', 'SETPCAP', 'DAC_OVERRIDE', 'FOWNER']) {
    assert.ok(worker.cap_add?.includes(cap), `${cap}: setpriv needs it, or the worker's VM sockets, or QEMU with volumes (docs/DEPLOY.md)`);
  }
  assert.ok(!worker.cap_add?.includes('DAC_READ_SEARCH'), 'QEMU never keeps dac_read_search (docs/THREATS.md): not granted');
  for (const cap of worker.cap_add ?? []) assert.doesNotMatch(cap, /^(SYS_ADMIN|NET_ADMIN|SYS_MODULE|SYS_PTRACE|ALL)$/, cap);
  for (const svc of ['api', 'worker']) {
    assert.equal(service(svc).init, true, `${svc}: an init reaps children and forwards signals`);
    assert.ok(service(svc).healthcheck?.test.length, `${svc}: a health check`);
    assert.ok(service(svc).stop_grace_period, `${svc}: an explicit stop grace period`);
  }
  assert.equal(service('api').build?.args?.BASE_IMAGE, '${MONOCORE_BASE_IMAGE:-node:20-bookworm-slim}');
});

test('every MONOCORE_* variable compose sets is one the code reads', () => {
  const code = ['libs/engine/src', 'apps/api/src', 'apps/worker/src', 'apps/puller/src'].map((d) => sources(join(repoRoot, d))).join('\n');
  for (const [name, svc] of Object.entries(compose.services)) {
    for (const key of Object.keys(svc.environment ?? {})) {
      if (!key.startsWith('MONOCORE_')) continue;
      assert.ok(code.includes(key), `${name}: ${key} is not read anywhere in the code (typo?)`);
    }
  }
});

test('the Dockerfile installs every workspace and builds every shipped package', () => {
  for (const ws of rootPkg.workspaces) {
    assert.ok(dockerfile.includes(`COPY ${ws}/package.json ${ws}/`), `Dockerfile does not copy ${ws}/package.json before npm ci`);
    assert.match(dockerfile, new RegExp(`tsc -b[^\\n]*\\s${ws.replace('/', '\\/')}(\\s|$)`, 'm'), `Dockerfile does not build ${ws}`);
  }
  for (const pkg of ['qemu-system-x86', 'busybox-static', 'e2fsprogs', 'erofs-utils', 'zstd', 'gcc', 'libc6-dev']) {
    assert.match(dockerfile, new RegExp(`\\b${pkg}\\b`), `runtime image lacks ${pkg}`);
  }
  assert.match(dockerfile, /guest-kernel\.sh/);
  assert.match(dockerfile, /^ARG BASE_IMAGE=node:20-bookworm-slim$/m, 'users get the official Node.js image by default');
  assert.equal(dockerfile.match(/^FROM \$\{BASE_IMAGE\}/gm)?.length, 2, 'both stages on BASE_IMAGE');
});
