// The reference deployment (docker-compose.yml + Dockerfile) stays consistent with the
// code: no Docker engine runs here, so these checks read the files and compare them with
// the apps' package.json bins and the environment variables the code actually reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from '../support/env.js';

interface ComposeService {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  devices?: string[];
  depends_on?: Record<string, { condition: string }>;
}
interface Compose {
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
  for (const [svc, app] of [['api', 'api'], ['puller', 'puller'], ['worker', 'worker']] as const) {
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
  for (const svc of ['api', 'puller', 'worker']) {
    assert.equal(service(svc).environment?.MONOCORE_REDIS_URL, 'redis://redis:6379', svc);
    assert.equal(service(svc).depends_on?.redis?.condition, 'service_healthy', svc);
  }
});

test('puller and worker of one host share MONOCORE_HOME (one named volume) and the host id; the worker gets /dev/kvm', () => {
  const puller = service('puller');
  const worker = service('worker');
  const home = puller.environment?.MONOCORE_HOME;
  assert.ok(home);
  assert.equal(worker.environment?.MONOCORE_HOME, home);
  assert.equal(worker.environment?.MONOCORE_HOST_ID, puller.environment?.MONOCORE_HOST_ID);
  const mount = (s: ComposeService): string | undefined => s.volumes?.find((v) => v.endsWith(`:${home}`));
  assert.ok(mount(puller) && mount(puller) === mount(worker), 'same volume mounted at MONOCORE_HOME');
  const volumeName = mount(worker)!.split(':')[0]!;
  assert.ok(compose.volumes && volumeName in compose.volumes, `volume ${volumeName} is declared`);
  assert.ok(worker.devices?.some((d) => d.startsWith('/dev/kvm')), 'worker has /dev/kvm');
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
});
