// The local daemon the CLI starts by itself, for real, from an empty MONOCORE_HOME:
// `monocore status` with nothing answering starts it (one line on stderr); a daemon
// killed with SIGKILL leaves a stale record that two racing commands (`up`, `status`)
// replace with exactly one new daemon; that `up` runs a real QEMU/TCG VM through it; `daemon status
// --json`, `daemon logs`; `daemon stop` leaves no process of that home behind
// (checked in /proc: redis-server, the node daemon, qemu-system). The daemon listens
// on a free loopback port (MONOCORE_API_PORT), never on the default 3456.
// A daemon that cannot come up (no redis-server on its PATH) fails the command with
// the tail of its log and leaves nothing behind; with MONOCORE_API_URL set nothing starts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { repoRoot, tempDir, testEnvWithKernel, waitFor } from '../support/env.js';

const CLI = join(repoRoot, 'apps', 'cli', 'dist', 'main.js');
const env = testEnvWithKernel();
const homes: string[] = [];

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface HomeProcess {
  pid: number;
  comm: string;
  cmdline: string;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/** The environment of a user with no API configured: only MONOCORE_HOME and the daemon's port. */
function userEnv(home: string, port: number, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, MONOCORE_HOME: home, MONOCORE_API_PORT: String(port), MONOCORE_KERNEL_DIR: env.kernelDir, ...extra };
  delete e.MONOCORE_API_URL;
  delete e.MONOCORE_API_TOKEN;
  delete e.MONOCORE_REDIS_URL;
  return e;
}

function cli(args: string[], childEnv: NodeJS.ProcessEnv, timeoutMs = 240_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
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

const show = (r: CliResult): string => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

/**
 * Every live process (zombies excluded) started for `home`: its MONOCORE_HOME in the
 * environment (the daemon, and QEMU, which inherits it), the home in its command line,
 * or a working directory under it (redis-server overwrites its environment with its
 * process title, and works in $MONOCORE_HOME/redis).
 */
function processesOf(home: string): HomeProcess[] {
  const found: HomeProcess[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'Z' || state === 'X') continue;
      const environ = readFileSync(`/proc/${name}/environ`, 'utf8').split('\0');
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ');
      const cwd = readlinkSync(`/proc/${name}/cwd`);
      if (!environ.includes(`MONOCORE_HOME=${home}`) && !cmdline.includes(home) && !cwd.startsWith(home)) continue;
      found.push({ pid: Number(name), comm: readFileSync(`/proc/${name}/comm`, 'utf8').trim(), cmdline });
    } catch {
      // gone while we looked
    }
  }
  return found;
}

const daemons = (ps: HomeProcess[]): HomeProcess[] => ps.filter((p) => p.comm === 'node' && / serve /.test(` ${p.cmdline} `));
const kinds = (ps: HomeProcess[]): string[] => [...new Set(ps.map((p) => (p.comm.startsWith('qemu-system') ? 'qemu-system' : p.comm)))].sort();

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return false;
  }
}

after(() => {
  // A failed test must not leave a daemon running: SIGKILL whatever is left of each home, by pid.
  for (const home of homes) {
    for (const p of processesOf(home)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(home, { recursive: true, force: true });
  }
});

test('the local daemon starts itself, survives a crash by being replaced once, runs a VM, and stops with nothing left', async () => {
  const home = tempDir('daemon-');
  homes.push(home);
  const port = await freePort();
  const uenv = userEnv(home, port);
  const url = `http://127.0.0.1:${port}`;

  // Nothing yet: `daemon status` says so (exit 1), and nothing is started by asking.
  const before = await cli(['daemon', 'status', '--json'], uenv);
  assert.equal(before.code, 1, show(before));
  assert.deepEqual(
    { ...JSON.parse(before.stdout), home: undefined },
    { phase: 'absent', running: false, home: undefined, url, log: join(home, 'log', 'daemon.log'), otherApiAnswers: false },
  );
  assert.deepEqual(processesOf(home), []);

  // 1. The first command that needs the API starts the daemon, says so in one line, and goes on.
  const first = await cli(['status'], uenv);
  assert.equal(first.code, 0, show(first));
  assert.match(first.stdout, /no services/);
  const said = first.stderr.trim().split('\n');
  assert.equal(said.length, 1, `exactly one line on stderr:\n${first.stderr}`);
  assert.match(said[0]!, new RegExp(`^monocore: nothing answered at ${url}, so the local daemon starts there \\(pid \\d+, state in ${home};`));

  const status = await cli(['daemon', 'status', '--json'], uenv);
  assert.equal(status.code, 0, show(status));
  const st = JSON.parse(status.stdout) as { phase: string; running: boolean; pid: number; url: string; version: string; services: Record<string, number> };
  assert.equal(st.phase, 'running');
  assert.equal(st.running, true);
  assert.equal(st.url, url);
  assert.deepEqual(st.services, {});
  assert.equal(Number(/pid (\d+)/.exec(said[0]!)?.[1]), st.pid);
  // Detached: the daemon leads its own session (setsid) and outlives the command that started it.
  const stat = readFileSync(`/proc/${st.pid}/stat`, 'utf8');
  assert.equal(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]), st.pid, 'the daemon is its session leader');
  assert.deepEqual(daemons(processesOf(home)).map((p) => p.pid), [st.pid]);
  assert.deepEqual(kinds(processesOf(home)), ['node', 'redis-server']);
  const human = await cli(['daemon', 'status'], uenv);
  assert.match(human.stdout, new RegExp(`^daemon: +running \\(pid ${st.pid}\\) at ${url}, up `, 'm'));
  assert.match(human.stdout, /^services: 0$/m);

  // 2. A crash (SIGKILL: no cleanup, its Redis left running) leaves a stale record.
  process.kill(st.pid, 'SIGKILL');
  await waitFor(() => !alive(st.pid), { what: 'the killed daemon to be gone', timeoutMs: 10_000 });
  const stale = await cli(['daemon', 'status', '--json'], uenv);
  assert.equal(stale.code, 1);
  assert.equal((JSON.parse(stale.stdout) as { phase: string }).phase, 'stale');
  assert.deepEqual(kinds(processesOf(home)), ['redis-server'], 'the crashed daemon left its Redis');

  // Two commands racing, `up` (whose first request is its event stream) and `status`: exactly one
  // starts a daemon (replacing the stale record, ending the old Redis), both succeed, and `up` runs a
  // real VM through it.
  const cfg = join(home, 'monocore.toml');
  writeFileSync(cfg, `[[service]]\nname = "hello"\nbase = "${env.image}"\nram = 192\ncommand = "/bin/sh"\nargs = ["-c", "echo hello-from-the-daemon; exec sleep 600"]\n`);
  const [up, b] = await Promise.all([cli(['up', '-f', cfg], uenv), cli(['status', '--json'], uenv)]);
  assert.equal(up.code, 0, show(up));
  assert.match(up.stdout, /all 1 service\(s\) running/);
  assert.equal(b.code, 0, show(b));
  assert.ok(Array.isArray((JSON.parse(b.stdout) as { services: unknown }).services), b.stdout);
  const starters = [up, b].filter((r) => r.stderr.includes('the local daemon starts there'));
  assert.equal(starters.length, 1, `one of the two started the daemon:\nup: ${up.stderr}\nstatus: ${b.stderr}`);
  assert.match(starters[0]!.stderr, new RegExp(`it replaces one that had stopped \\(pid ${st.pid} no longer runs; ended 1 process\\(es\\) it left\\)`));
  const other = [up, b].find((r) => r !== starters[0])!;
  assert.doesNotMatch(other.stderr, /local daemon/, 'the other one starts nothing');
  const ps = processesOf(home);
  assert.equal(daemons(ps).length, 1, `one daemon: ${JSON.stringify(ps)}`);
  assert.equal(ps.filter((p) => p.comm === 'redis-server').length, 1, `one redis-server: ${JSON.stringify(ps)}`);
  const daemonPid = daemons(ps)[0]!.pid;
  assert.notEqual(daemonPid, st.pid);

  // 3. The VM runs under the daemon, its output reaches `logs`.
  const logs = await waitFor(async () => {
    const r = await cli(['logs', 'hello'], uenv);
    return r.stdout.includes('hello-from-the-daemon') ? r : undefined;
  }, { what: 'the service output through the daemon', timeoutMs: 30_000, intervalMs: 500 });
  assert.equal(logs.code, 0);
  const running = processesOf(home);
  assert.deepEqual(kinds(running), ['node', 'qemu-system', 'redis-server'], JSON.stringify(running));
  const withVm = await cli(['daemon', 'status', '--json'], uenv);
  assert.deepEqual((JSON.parse(withVm.stdout) as { services: Record<string, number> }).services, { running: 1 });

  // 4. daemon logs: serve's lines, -n limits; -f follows until interrupted.
  const daemonLogs = await cli(['daemon', 'logs'], uenv);
  assert.equal(daemonLogs.code, 0, show(daemonLogs));
  assert.match(daemonLogs.stdout, new RegExp(`monocore serve: API listening on ${url}`));
  assert.match(daemonLogs.stdout, /starting the daemon \(monocore serve --port \d+\)/);
  const lastLine = await cli(['daemon', 'logs', '-n', '1'], uenv);
  assert.equal(lastLine.stdout.trim().split('\n').length, 1, show(lastLine));
  const follow = spawn(process.execPath, [CLI, 'daemon', 'logs', '-f', '-n', '0'], { env: uenv, stdio: ['ignore', 'pipe', 'pipe'] });
  let followed = '';
  follow.stdout.on('data', (d: Buffer) => (followed += d.toString()));
  // The daemon logs every service it starts: a second one makes a line appear.
  const cfg2 = join(home, 'second.toml');
  writeFileSync(cfg2, `[[service]]\nname = "second"\nbase = "${env.image}"\nram = 192\ncommand = "/bin/sh"\nargs = ["-c", "exec sleep 600"]\n`);
  const second = await cli(['up', '-f', cfg2], uenv);
  assert.equal(second.code, 0, show(second));
  await waitFor(() => /service running {2}service=second /.test(followed), { what: 'daemon logs -f to print the new service', timeoutMs: 30_000 });
  follow.kill('SIGINT');
  assert.equal(await new Promise<number | null>((resolve) => follow.on('close', resolve)), 0);
  assert.equal(processesOf(home).filter((p) => p.comm.startsWith('qemu-system')).length, 2, 'two VMs run');

  // 5. daemon stop: nothing of this home is left running, the record is gone.
  const stop = await cli(['daemon', 'stop'], uenv);
  assert.equal(stop.code, 0, show(stop));
  assert.equal(stop.stdout, `daemon stopped (pid ${daemonPid})\n`);
  assert.deepEqual(processesOf(home), [], 'no redis-server, node daemon or qemu-system of this home after daemon stop');
  assert.ok(!existsSync(join(home, 'run', 'daemon.json')), 'the record is removed');
  const after = await cli(['daemon', 'status', '--json'], uenv);
  assert.equal(after.code, 1);
  assert.equal((JSON.parse(after.stdout) as { phase: string }).phase, 'absent');
  const stopAgain = await cli(['daemon', 'stop'], uenv);
  assert.equal(stopAgain.code, 0);
  assert.equal(stopAgain.stdout, 'daemon not running: nothing to stop\n');
});

test('a daemon that cannot come up fails the command with its log tail and leaves nothing; MONOCORE_API_URL never starts one', async () => {
  const home = tempDir('daemon-fail-');
  homes.push(home);
  const port = await freePort();

  // Set explicitly, an unreachable API stays an error: no daemon is started for it.
  const named = await cli(['status'], { ...userEnv(home, port), MONOCORE_API_URL: `http://127.0.0.1:${port}` });
  assert.equal(named.code, 1, show(named));
  assert.match(named.stderr, /cannot reach the monocore API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
  assert.ok(!existsSync(join(home, 'run', 'daemon.json')));
  assert.deepEqual(processesOf(home), []);

  // No redis-server on the PATH the daemon inherits: serve exits at start.
  const broken = await cli(['status'], userEnv(home, port, { PATH: join(home, 'no-such-dir') }));
  assert.equal(broken.code, 1, show(broken));
  assert.match(broken.stderr, /the local daemon starts there/);
  assert.match(broken.stderr, /error: the local monocore daemon did not come up: it exited with code \d+\. Last lines of .*daemon\.log:/);
  assert.match(broken.stderr, /redis-server is not installed/);
  assert.ok(!existsSync(join(home, 'run', 'daemon.json')), 'no record of a daemon that never came up');
  assert.deepEqual(processesOf(home), []);
});
