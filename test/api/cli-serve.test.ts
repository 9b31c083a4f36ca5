// End to end: `monocore serve` spawned as a child process with its own
// MONOCORE_HOME (embedded Redis, real worker, real QEMU/TCG VMs booting the
// test image from the loopback registry), driven by the `monocore` CLI as a
// user would: up (plan + progress + exit code), status --json, logs, down,
// remove, auth, and the usage/unreachable exit codes. VM boots are kept to three.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tempDir, testEnvWithKernel, waitFor } from '../support/env.js';

const CLI = join(repoRoot, 'apps', 'cli', 'dist', 'main.js');
const TOKEN = 'e2e-token-abcdefghijklmnop';
const env = testEnvWithKernel();
let home: string;
let serve: ChildProcess;
let serveErr = '';
let apiUrl = '';
let exited: Promise<number | null>;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the monocore CLI with serve's MONOCORE_HOME (so it holds the local credential) unless overridden. */
function cli(args: string[], extraEnv: Record<string, string | undefined> = {}, timeoutMs = 180_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, MONOCORE_HOME: home, MONOCORE_API_URL: apiUrl, MONOCORE_API_TOKEN: '' };
    for (const [k, v] of Object.entries(extraEnv)) {
      if (v === undefined) delete childEnv[k];
      else childEnv[k] = v;
    }
    const child = spawn(process.execPath, [CLI, ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`monocore ${args.join(' ')} did not finish in ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const show = (r: CliResult): string => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\nserve:\n${serveErr.slice(-3000)}`;

before(async () => {
  home = tempDir('api-e2e-');
  const serveEnv: NodeJS.ProcessEnv = { ...process.env, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: env.kernelDir, MONOCORE_API_TOKEN: TOKEN };
  delete serveEnv.MONOCORE_REDIS_URL; // serve must embed its own Redis
  serve = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--host-id', 'e2e-host'], { env: serveEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  exited = new Promise((resolve) => serve.once('exit', (code) => resolve(code)));
  serve.stderr!.on('data', (d: Buffer) => (serveErr += d.toString()));
  apiUrl = await waitFor(
    () => {
      if (serve.exitCode !== null) throw new Error(`serve exited with ${serve.exitCode}:\n${serveErr}`);
      return /API listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(serveErr)?.[1];
    },
    { what: 'monocore serve to listen', timeoutMs: 60_000, intervalMs: 100 },
  );
});

after(async () => {
  if (serve && serve.exitCode === null) {
    serve.kill('SIGKILL');
    await exited;
  }
  // An embedded redis-server left by a failed test: stop it by its pid file, never by name.
  const pidFile = join(home, 'redis', 'redis.pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    try {
      if (pid > 1) process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(home, { recursive: true, force: true });
});

test('monocore CLI against a running `monocore serve`: up, status, logs, down, remove with meaningful exit codes', async () => {
  // A host volume: trusted from a local file through the CLI (not over plain REST, see below).
  const shared = join(home, 'shared');
  mkdirSync(shared);
  writeFileSync(join(shared, 'hello.txt'), 'hello-from-the-host\n');
  const cfg = join(home, 'monocore.toml');
  writeFileSync(
    cfg,
    `# the seed's two-service example, on the local test image
[[service]]
name = "counter"
base = "${env.image}"
ram = 192
group = "demo"
command = "/bin/sh"
args = ["-c", "echo hello-from-counter; echo counter-err >&2; i=0; while true; do i=$((i+1)); echo count $i; sleep 1; done"]

[[service]]
name = "reader"
base = "${env.image}"
ram = 192
group = "demo"
depends_on = ["counter"]
command = "/bin/sh"
args = ["-c", "echo reader-up; cat /shared/hello.txt; exec sleep 600"]
volumes = ["${shared}:/shared"]

[[group]]
name = "demo"
local_only = true
`,
  );

  // up: plan on stdout, per-service progress on stderr, exit 0 when all run.
  const up = await cli(['up', '-f', cfg]);
  assert.equal(up.code, 0, show(up));
  assert.match(up.stdout, /2 services in dependency order/);
  assert.ok(up.stdout.indexOf('counter') < up.stdout.indexOf('reader'), 'plan lists counter before reader');
  assert.match(up.stdout, /all 2 service\(s\) running/);
  assert.match(up.stderr, /counter\s+\S+ → running/);
  assert.match(up.stderr, /reader\s+\S+ → running/);

  // status --json: machine-readable, every service running on the serve's host.
  const status = await cli(['status', '--json']);
  assert.equal(status.code, 0, show(status));
  const services = (JSON.parse(status.stdout) as { services: Array<Record<string, unknown>> }).services;
  assert.deepEqual(services.map((s) => s.name).sort(), ['counter', 'reader']);
  for (const s of services) {
    assert.equal(s.status, 'running');
    assert.equal(s.host, 'e2e-host');
    assert.equal(s.group, 'demo');
    assert.equal(typeof s.startedAt, 'string');
  }
  const reader = services.find((s) => s.name === 'reader')!;
  const counter = services.find((s) => s.name === 'counter')!;
  assert.ok(Date.parse(String(counter.startedAt)) <= Date.parse(String(reader.startedAt)), 'counter started before reader');
  const table = await cli(['status']);
  assert.match(table.stdout, /^SERVICE\s+GROUP\s+STATUS\s+HOST\s+PID\s+RESTARTS\s+UPTIME\s+EXIT\s+LAST ERROR$/m);
  assert.match(table.stdout, /^counter\s+demo\s+running\s+e2e-host/m);

  // logs: stdout and stderr kept apart, -n limits.
  const logs = await waitFor(async () => {
    const r = await cli(['logs', 'counter', '-n', '1000']);
    return r.stdout.includes('count 2') ? r : undefined;
  }, { what: 'counter output in logs', timeoutMs: 30_000, intervalMs: 500 });
  assert.equal(logs.code, 0);
  assert.match(logs.stdout, /^hello-from-counter$/m);
  assert.doesNotMatch(logs.stdout, /counter-err/);
  const readerLogs = await waitFor(async () => {
    const r = await cli(['logs', 'reader']);
    return r.stdout.includes('hello-from-the-host') ? r : undefined;
  }, { what: 'reader to print the file from its host volume', timeoutMs: 30_000, intervalMs: 500 });
  assert.match(readerLogs.stdout, /^reader-up\nhello-from-the-host$/m);
  const errLogs = await cli(['logs', 'counter', '--stderr']);
  assert.match(errLogs.stdout, /^counter-err$/m);
  const last = await cli(['logs', 'counter', '-n', '1']);
  assert.equal(last.stdout.trim().split('\n').length, 1);
  const asJson = await cli(['logs', 'counter', '--stderr', '--json']);
  assert.deepEqual(asJson.stdout.trim().split('\n').map((l) => JSON.parse(l)), [{ service: 'counter', stream: 'stderr', line: 'counter-err' }]);

  // logs -f follows until interrupted.
  const follow = spawn(process.execPath, [CLI, 'logs', 'counter', '-f', '-n', '0'], {
    env: { ...process.env, MONOCORE_HOME: home, MONOCORE_API_URL: apiUrl, MONOCORE_API_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let followed = '';
  follow.stdout.on('data', (d: Buffer) => (followed += d.toString()));
  await waitFor(() => /count \d+\n/.test(followed), { what: 'logs -f to print a new line', timeoutMs: 15_000 });
  follow.kill('SIGINT');
  const followCode = await new Promise<number | null>((resolve) => follow.on('close', resolve));
  assert.equal(followCode, 0);

  // A command that starts and then exits 3 (restart = "no"): `up` succeeds (the guest
  // reported the command started), then status shows exited(3) with its exit code.
  const crash = join(home, 'crash.toml');
  writeFileSync(crash, `[[service]]\nname = "crasher"\nbase = "${env.image}"\nram = 192\ncommand = "/bin/sh"\nargs = ["-c", "echo dying; sleep 1; exit 3"]\nrestart = "no"\n`);
  const crashed = await cli(['up', '-f', crash]);
  assert.equal(crashed.code, 0, show(crashed));
  const exitedRow = await waitFor(async () => {
    const rows = JSON.parse((await cli(['status', '--json', 'crasher'])).stdout) as { services: Array<{ status: string; exitCode?: number }> };
    return rows.services.find((r) => r.status === 'exited');
  }, { what: 'crasher to be reported exited', timeoutMs: 30_000, intervalMs: 500 });
  assert.equal(exitedRow.exitCode, 3);
  assert.match((await cli(['status', 'crasher'])).stdout, /^crasher\s+-\s+exited\(3\)\s+e2e-host\s+\S+\s+0\s+-\s+3\s/m);

  // A service that cannot start (its image does not exist): up exits 1, --json says why.
  const bad = join(home, 'bad.toml');
  writeFileSync(bad, `[[service]]\nname = "ghost"\nbase = "${env.registry}/monocore-test/does-not-exist:latest"\nram = 192\n`);
  const failed = await cli(['up', '-f', bad, '--json']);
  assert.equal(failed.code, 1, show(failed));
  const failedJson = JSON.parse(failed.stdout) as { ok: boolean; services: Array<{ name: string; status: string; lastError?: string; reason?: string }> };
  assert.equal(failedJson.ok, false);
  const ghost = failedJson.services.find((s) => s.name === 'ghost');
  assert.equal(ghost?.status, 'failed', JSON.stringify(ghost));
  assert.match(`${ghost?.lastError ?? ''} ${ghost?.reason ?? ''}`, /does-not-exist/);

  // down: dependents first, exit 0, everything stopped.
  const down = await cli(['down', '-g', 'demo']);
  assert.equal(down.code, 0, show(down));
  assert.match(down.stdout, /stopped reader, counter \(in this order\)/);
  const afterDown = JSON.parse((await cli(['status', '--json'])).stdout) as { services: Array<{ name: string; status: string }> };
  for (const s of afterDown.services.filter((x) => x.name === 'counter' || x.name === 'reader')) assert.equal(s.status, 'stopped', `${s.name} after down`);

  // remove: state gone.
  const removed = await cli(['remove', '--json']);
  assert.equal(removed.code, 0, show(removed));
  const afterRemove = JSON.parse((await cli(['status', '--json'])).stdout) as { services: unknown[] };
  assert.deepEqual(afterRemove.services, []);
});

test('CLI exit codes: usage 2, invalid config 1 with FILE:LINE, unknown service 1, unreachable API 1, auth', async () => {
  const missing = await cli(['up', '-f', join(home, 'nope.toml')]);
  assert.equal(missing.code, 2, show(missing));
  assert.match(missing.stderr, /nope\.toml/);

  const invalid = join(home, 'invalid.toml');
  writeFileSync(invalid, '[[service]]\nname = "a"\nram = "big"\ndepends_on = ["b"]\n');
  const inv = await cli(['up', '-f', invalid]);
  assert.equal(inv.code, 1, show(inv));
  assert.match(inv.stderr, /invalid\.toml:3:\d+: service\[0\]\.ram: /);
  assert.match(inv.stderr, /invalid\.toml:4:\d+: service\[0\]\.depends_on\[0\]: /);

  const nope = await cli(['logs', 'no-such-service']);
  assert.equal(nope.code, 1);
  assert.match(nope.stderr, /no-such-service/);

  // --no-wait: the plan as JSON at once, exit 0 (an image that does not exist: nothing boots).
  const later = join(home, 'later.toml');
  writeFileSync(later, `[[service]]\nname = "later"\nbase = "${env.registry}/monocore-test/not-here:latest"\n`);
  const noWait = await cli(['up', '-f', later, '--no-wait', '--json']);
  assert.equal(noWait.code, 0, show(noWait));
  const enqueued = JSON.parse(noWait.stdout) as { deploymentId: string; plan: Array<{ name: string }>; waited: boolean };
  assert.equal(enqueued.waited, false);
  assert.deepEqual(enqueued.plan.map((p) => p.name), ['later']);

  // status --watch --json: one JSON line per change, until Ctrl-C (exit 0).
  const watch = spawn(process.execPath, [CLI, 'status', '--watch', '--json', '--interval', '0.3', 'later'], {
    env: { ...process.env, MONOCORE_HOME: home, MONOCORE_API_URL: apiUrl, MONOCORE_API_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let watched = '';
  watch.stdout.on('data', (d: Buffer) => (watched += d.toString()));
  await waitFor(() => watched.includes('\n'), { what: 'status --watch to print', timeoutMs: 20_000 });
  watch.kill('SIGINT');
  assert.equal(await new Promise<number | null>((resolve) => watch.on('close', resolve)), 0);
  const first = JSON.parse(watched.split('\n')[0] ?? '') as { time: string; services: Array<{ name: string }> };
  assert.deepEqual(first.services.map((x) => x.name), ['later']);
  assert.equal((await cli(['remove', 'later'])).code, 0);

  const badFlag = await cli(['status', '--bogus']);
  assert.equal(badFlag.code, 2);

  const unreachable = await cli(['status', '--api', 'http://127.0.0.1:9']);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /cannot reach the monocore API at http:\/\/127\.0\.0\.1:9.*is `monocore serve` running\?/);

  // serve runs with MONOCORE_API_TOKEN: a CLI without the local credential (other MONOCORE_HOME) needs it.
  const otherHome = tempDir('api-e2e-other-');
  try {
    const denied = await cli(['status'], { MONOCORE_HOME: otherHome });
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /bearer token/);
    const allowed = await cli(['status', '--json'], { MONOCORE_HOME: otherHome, MONOCORE_API_TOKEN: TOKEN });
    assert.equal(allowed.code, 0, show(allowed));
    // The token alone does not make a caller a local config author: host volumes are refused.
    const vol = join(otherHome, 'vol.toml');
    writeFileSync(vol, `[[service]]\nname = "v"\nbase = "${env.image}"\nvolumes = ["/etc:/host-etc"]\n`);
    const refused = await cli(['up', '-f', vol], { MONOCORE_HOME: otherHome, MONOCORE_API_TOKEN: TOKEN });
    assert.equal(refused.code, 1, show(refused));
    assert.match(refused.stderr, /service\[0\]\.volumes\[0\].*not allowed|not allowed.*service\[0\]\.volumes\[0\]/);
  } finally {
    rmSync(otherHome, { recursive: true, force: true });
  }
});

test('serve stops cleanly on SIGTERM: exit 0, embedded Redis stopped, local credential removed', async () => {
  const tokenFile = join(home, 'run', 'api-local.token');
  assert.ok(existsSync(tokenFile));
  const redisPid = Number(readFileSync(join(home, 'redis', 'redis.pid'), 'utf8').trim());
  serve.kill('SIGTERM');
  assert.equal(await exited, 0, serveErr);
  assert.ok(!existsSync(tokenFile), 'local credential removed');
  assert.throws(() => process.kill(redisPid, 0), 'embedded redis-server is gone');
  assert.match(serveErr, /stopped/);
  const log = readFileSync(join(home, 'log', 'serve.log'), 'utf8');
  assert.ok(log.split('\n').filter(Boolean).every((l) => JSON.parse(l) !== null), 'the log file is JSON lines');
});
