// The reference deployment, started for real: docker-compose.yml (+ test/compose/docker-compose.test.yml
// for what a machine without an image hub needs) on a real Docker engine, with the image the
// Dockerfile builds. redis + api + two worker replicas; a monocore.toml submitted by the CLI through
// the published API; the service runs on one replica (its logs over the API); that replica is
// stopped and the service runs again on the other; `down -v` leaves no container, network or volume.
//
// Engine: scripts/docker-engine.sh (one that answers, else Debian's dockerd as this checkout's own,
// with no route off the machine). Images: scripts/docker-base-image.sh (a local node:20-bookworm-slim
// from Debian packages) and scripts/docker-build-cached.sh (monocore's Dockerfile and the test's
// Redis/registry image on it; rebuilt only when their inputs change, docs/DEPLOY.md "The compose test").
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoRoot, tempDir, testEnv, waitFor } from '../support/env.js';
import { holdVmTestLock } from '../support/vm-test-lock.js';

const env = testEnv();
// The workers boot VMs (QEMU under TCG inside their containers): beside other VM tests, never beside the chaos soak.
holdVmTestLock(env.stateDir, 'shared');

const cli = fileURLToPath(new URL('../../../apps/cli/dist/main.js', import.meta.url));
const project = `mccompose${process.pid}`;
const token = randomBytes(24).toString('hex');
const service = 'compose-hello';
const marker = 'hello from a compose worker';
const work = tempDir('compose-');
const docker = '/usr/bin/docker';

/** Environment for docker, docker-compose and the scripts. */
const dockerEnv: NodeJS.ProcessEnv = { ...process.env };
delete dockerEnv.DOCKER_BUILDKIT;
let apiUrl = '';

interface Run { code: number; stdout: string; stderr: string }

/** Runs a command to its end (stderr passed through as it comes: image builds are long). */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; echo?: boolean } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: repoRoot, env: opts.env ?? dockerEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (opts.echo) process.stderr.write(d);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function must(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; echo?: boolean } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stderr.slice(-4000)}\n${r.stdout.slice(-2000)}`);
  return r.stdout;
}

const lastLine = (s: string): string => s.trim().split('\n').pop()!.trim();

const compose = (...args: string[]): Promise<string> =>
  must('docker-compose', ['-p', project, '-f', 'docker-compose.yml', '-f', 'test/compose/docker-compose.test.yml', ...args]);

/**
 * One HTTP request to the published API. node:http, not fetch: Node 20's fetch never settles —
 * and holds nothing that keeps the event loop alive — when the peer closes the connection at
 * once, which docker-proxy does while the API inside the container is not listening yet.
 */
function http(path: string, opts: { token?: boolean } = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${apiUrl}${path}`, { headers: opts.token === false ? {} : { authorization: `Bearer ${token}` }, timeout: 15_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer within 15 s`)));
    req.on('error', reject);
    req.end();
  });
}

async function api<T>(path: string): Promise<{ status: number; body: T }> {
  const { status, text } = await http(path);
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* text answer (logs) */
  }
  return { status, body: body as T };
}

interface HostView { id: string; alive: boolean }
interface ServiceView { name: string; status: string; host?: string; lastError?: string }

async function workerContainers(): Promise<string[]> {
  const out = await must(docker, ['ps', '-q', '--no-trunc', '--filter', `label=com.docker.compose.project=${project}`, '--filter', 'label=com.docker.compose.service=worker']);
  return out.split('\n').map((s) => s.trim()).filter(Boolean).sort();
}

async function serviceView(): Promise<ServiceView | undefined> {
  const r = await api<{ services: ServiceView[] }>(`/status?services=${service}`);
  return r.body.services?.find((s) => s.name === service);
}

const timings: string[] = [];
const timed = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
  const t0 = Date.now();
  try {
    return await f();
  } finally {
    timings.push(`${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
};

let volumes: string[] = [];

/**
 * Projects of earlier runs of this test whose process is gone (killed by a file timeout before
 * its after() could run `down -v`): removed, or their workers' VMs would run on for good.
 * Plain docker, since compose needs the settings of the run that started them.
 */
async function removeStaleProjects(): Promise<void> {
  const labels = await must(docker, ['ps', '-a', '--filter', 'label=com.docker.compose.project', '--format', '{{.Label "com.docker.compose.project"}}']);
  const stale = [...new Set(labels.split('\n').map((l) => l.trim()))].filter((name) => {
    const pid = /^mccompose(\d+)$/.exec(name)?.[1];
    if (!pid || Number(pid) === process.pid) return false;
    try {
      process.kill(Number(pid), 0);
      return false; // that run is still going
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'ESRCH';
    }
  });
  for (const name of stale) {
    process.stderr.write(`compose test: removing project ${name} left by a run that did not finish\n`);
    const label = `label=com.docker.compose.project=${name}`;
    const ids = (what: string[]): Promise<string[]> => must(docker, what).then((o) => o.split('\n').map((x) => x.trim()).filter(Boolean));
    const containers = await ids(['ps', '-aq', '--filter', label]);
    if (containers.length) await must(docker, ['rm', '-f', '-v', ...containers]); // -v: their anonymous volumes too
    const networks = await ids(['network', 'ls', '-q', '--filter', label]);
    if (networks.length) await must(docker, ['network', 'rm', ...networks]);
    const vols = await ids(['volume', 'ls', '-q', '--filter', label]);
    if (vols.length) await must(docker, ['volume', 'rm', ...vols]);
  }
}

before(async () => {
  // Engine and images come from scripts/compose-images.sh, which scripts/test.sh runs before the
  // tests (building them reaches package mirrors; a test talks only to this machine; cold, on a
  // fresh CI machine, about 7 minutes: docs/DEPLOY.md "The compose test"). Without them this
  // fails, naming the script: nothing here is skipped.
  const missing = ['MONOCORE_TEST_DOCKER_HOST', 'MONOCORE_TEST_COMPOSE_IMAGE', 'MONOCORE_TEST_COMPOSE_SUPPORT_IMAGE'].filter((k) => !process.env[k]);
  assert.deepEqual(missing, [], 'the compose images are not prepared: run `bash scripts/compose-images.sh && source .monocore-test/compose-images.env` (scripts/test.sh does)');
  dockerEnv.DOCKER_HOST = process.env.MONOCORE_TEST_DOCKER_HOST!;
  const image = process.env.MONOCORE_TEST_COMPOSE_IMAGE!;
  const support = process.env.MONOCORE_TEST_COMPOSE_SUPPORT_IMAGE!;
  for (const ref of [image, support]) {
    const inspect = await run(docker, ['image', 'inspect', '--format', '{{.Id}}', ref], { env: dockerEnv });
    assert.equal(inspect.code, 0, `the engine at ${dockerEnv.DOCKER_HOST} has no image ${ref}: run bash scripts/compose-images.sh (${inspect.stderr.trim()})`);
  }
  const composeVersion = await run('docker-compose', ['version', '--short']).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
  assert.equal(composeVersion.code, 0, `docker-compose does not run (scripts/install-deps.sh installs Debian's docker-compose): ${composeVersion.stderr.trim()}`);
  await removeStaleProjects();
  Object.assign(dockerEnv, {
    MONOCORE_IMAGE: image,
    MONOCORE_REDIS_IMAGE: support,
    MONOCORE_API_TOKEN: token,
    MONOCORE_API_PUBLISH_PORT: '', // a free port on 127.0.0.1, chosen by Docker
    MONOCORE_TEST_REGISTRY_DIR: join(env.stateDir, 'registry'),
    MONOCORE_LOG_LEVEL: 'info',
  });
}, { timeout: 60_000 });

after(async () => {
  // After a failure: what the workers said, then nothing left behind.
  if (apiUrl) {
    const logs = await run('docker-compose', ['-p', project, '-f', 'docker-compose.yml', '-f', 'test/compose/docker-compose.test.yml', 'logs', '--no-color', '--tail', '40']);
    if (process.exitCode) process.stderr.write(logs.stdout.slice(-8000));
  }
  await run('docker-compose', ['-p', project, '-f', 'docker-compose.yml', '-f', 'test/compose/docker-compose.test.yml', 'down', '-v', '--timeout', '5']);
  await rm(work, { recursive: true, force: true });
  process.stderr.write(`compose test timings: ${timings.join('; ')}\n`);
});

test('compose: redis + api + 2 workers; a service placed, its logs, failover to the other replica, down -v leaves nothing', { timeout: 10 * 60_000 }, async (t) => {
  await t.test('up --scale worker=2: every process healthy, each replica a host of its own', async () => {
    await timed('compose up', () => compose('up', '-d', '--no-build', '--scale', 'worker=2'));
    const port = lastLine(await compose('port', 'api', '3456'));
    assert.match(port, /^127\.0\.0\.1:\d+$/, `the API is published on the host's loopback only (${port})`);
    apiUrl = `http://${port}`;
    await waitFor(async () => (await http('/healthz', { token: false })).status === 200, { what: 'the API to answer /healthz', timeoutMs: 120_000, intervalMs: 500 });

    const unauthenticated = await http('/status', { token: false });
    assert.equal(unauthenticated.status, 401, 'the API bound to 0.0.0.0 in its container requires the token');

    const ids = (await workerContainers()).map((id) => id.slice(0, 12));
    assert.equal(ids.length, 2, 'two worker containers');
    // Host id = the container's hostname (its short id); each registers, each is alive.
    const hosts = await waitFor(async () => {
      const r = await api<{ hosts: HostView[] }>('/hosts');
      const alive = (r.body.hosts ?? []).filter((h) => h.alive).map((h) => h.id).sort();
      return alive.length === 2 ? alive : undefined;
    }, { what: 'both worker replicas to register as hosts', timeoutMs: 180_000, intervalMs: 500 });
    assert.deepEqual(hosts, [...ids].sort());

    // Every container healthy by its own health check (the worker's: its heartbeat in Redis).
    const all = (await must(docker, ['ps', '-q', '--filter', `label=com.docker.compose.project=${project}`])).split('\n').filter(Boolean);
    assert.equal(all.length, 5, 'redis, registry, api, 2 workers');
    await waitFor(async () => {
      const health = await must(docker, ['inspect', '--format', '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}', ...all]);
      const states = health.trim().split('\n');
      return states.filter((l) => l.endsWith(' healthy')).length === 4 ? states : undefined;
    }, { what: 'redis, api and both workers to report healthy', timeoutMs: 180_000, intervalMs: 1000 });

    // Non-root where possible: the API as the image's node user, Redis as redis; the worker as root.
    assert.equal((await compose('exec', '-T', 'api', 'id', '-un')).trim(), 'node');
    assert.equal((await compose('exec', '-T', 'redis', 'id', '-un')).trim(), 'redis');
    assert.equal((await compose('exec', '-T', '--index=1', 'worker', 'id', '-un')).trim(), 'root');

    for (const c of all) {
      const mounts = JSON.parse(await must(docker, ['inspect', '--format', '{{json .Mounts}}', c])) as { Type: string; Name?: string }[];
      volumes.push(...mounts.filter((x) => x.Type === 'volume' && x.Name).map((x) => x.Name!));
    }
    volumes = [...new Set(volumes)];
    assert.ok(volumes.length >= 3, `redis-data and one home per worker replica: ${volumes.join(', ')}`);
  });

  let firstHost = '';
  await t.test('a monocore.toml submitted through the published API runs on one replica; its logs over the API', async () => {
    const config = join(work, 'monocore.toml');
    await writeFile(config, [
      '[[service]]',
      `name = "${service}"`,
      'base = "registry:5000/monocore-test/busybox:latest"',
      'ram = 128',
      'cpus = 1',
      'command = "/bin/sh"',
      `args = ["-c", "echo '${marker}'; while true; do sleep 1; done"]`,
      '',
    ].join('\n'));
    const up = await timed('monocore up (pull + first boot)', () => run(process.execPath, [cli, 'up', '-f', config, '--timeout', '420', '--json'], {
      env: { ...process.env, MONOCORE_API_URL: apiUrl, MONOCORE_API_TOKEN: token },
    }));
    assert.equal(up.code, 0, `monocore up failed:\n${up.stderr.slice(-3000)}\n${up.stdout.slice(-2000)}`);
    const svc = await serviceView();
    assert.ok(svc, `${service} in /status`);
    assert.equal(svc.status, 'running', JSON.stringify(svc));
    const ids = (await workerContainers()).map((id) => id.slice(0, 12));
    assert.ok(svc.host && ids.includes(svc.host), `placed on a replica (${svc.host} in ${ids.join(', ')})`);
    firstHost = svc.host;

    // Inside the container QEMU is confined as on a bare host (docs/THREATS.md): a uid of its own,
    // no groups, no capability at all for a service without volumes — in its bounding set too,
    // which setpriv can cut only with SETPCAP (without it the bounding set silently stays the
    // container's) — no-new-privs and its seccomp filter.
    const status = await must(docker, ['exec', firstHost, 'sh', '-c',
      'for p in /proc/[0-9]*; do grep -q "^qemu-system" "$p/comm" 2>/dev/null && cat "$p/status"; done; true']);
    const field = (name: string): string | undefined => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(status)?.[1]?.trim();
    const uid = Number(field('Uid')?.split(/\s+/)[0]);
    assert.ok(uid >= 0x70000000, `QEMU runs as a per-VM uid, not root (Uid: ${field('Uid')})`);
    assert.equal(field('Groups'), '');
    for (const set of ['CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.equal(field(set), '0000000000000000', `QEMU ${set}`);
    assert.equal(field('NoNewPrivs'), '1');
    assert.equal(field('Seccomp'), '2');

    await waitFor(async () => {
      const logs = await api<string>(`/services/${service}/logs`);
      return logs.status === 200 && String(logs.body).includes(marker);
    }, { what: 'the guest\'s output in GET /services/:name/logs', timeoutMs: 60_000, intervalMs: 500 });
  });

  await t.test('the replica that runs it stops (docker stop): the service runs again on the other', async () => {
    assert.ok(firstHost, 'placed in the previous step');
    const container = (await workerContainers()).find((id) => id.startsWith(firstHost));
    assert.ok(container, `container of host ${firstHost}`);
    // SIGTERM through tini to the worker, which stops its VM and hands the service back within
    // the stop grace period: a clean exit, not Docker's SIGKILL.
    await timed('docker stop of the worker', () => must(docker, ['stop', container]));
    const state = (await must(docker, ['inspect', '--format', '{{.State.ExitCode}} {{.State.OOMKilled}}', container])).trim();
    assert.equal(state, '0 false', 'the worker exited by itself within stop_grace_period');
    const moved = await timed('failover to the other replica', () => waitFor(async () => {
      const s = await serviceView();
      return s?.status === 'running' && s.host && s.host !== firstHost ? s : undefined;
    }, { what: `${service} running on the other replica`, timeoutMs: 300_000, intervalMs: 1000 }));
    const others = (await workerContainers()).map((id) => id.slice(0, 12));
    assert.deepEqual(others, [moved.host], 'on the replica still running');
    await waitFor(async () => {
      const logs = await api<string>(`/services/${service}/logs`);
      return logs.status === 200 && String(logs.body).includes(marker);
    }, { what: 'the rescheduled guest\'s output over the API', timeoutMs: 60_000, intervalMs: 500 });
  });

  await t.test('down -v: no container, network or volume of the project is left', async () => {
    await timed('compose down -v', () => compose('down', '-v', '--timeout', '70'));
    const label = `label=com.docker.compose.project=${project}`;
    assert.equal((await must(docker, ['ps', '-aq', '--filter', label])).trim(), '', 'containers');
    assert.equal((await must(docker, ['network', 'ls', '-q', '--filter', label])).trim(), '', 'networks');
    assert.equal((await must(docker, ['volume', 'ls', '-q', '--filter', label])).trim(), '', 'labelled volumes');
    const names = (await must(docker, ['volume', 'ls', '--format', '{{.Name}}'])).split('\n');
    assert.deepEqual(volumes.filter((v) => names.includes(v)), [], 'the anonymous home volumes of the replicas are gone too');
    apiUrl = '';
  });
});
