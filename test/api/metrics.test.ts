// GET /metrics scraped by a real Prometheus, GET /hosts and `monocore hosts`,
// after real jobs ran: a worker (in process, QEMU under TCG, a fresh home so its
// pull is cold) pulls the test image from the loopback registry and boots three
// VMs: one service that keeps running, one that exits 3, is restarted once
// (on-failure, max_restarts = 1) and fails. The API requires a token, as it
// does when exposed; Prometheus scrapes it with the repository's own scrape
// config (deploy/prometheus/prometheus.yml, pointed at this API and token),
// promtool checks that config, its alert rules and the raw exposition, and
// every PromQL query of docs/METRICS.md and of the Grafana dashboard is run
// against the scraped data. Nothing leaves loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startApi, type RunningApi } from '@monocore/api';
import { COUNTERS, DURATIONS } from '@monocore/engine';
import { harness, svc, until, vmCopies, type Harness } from '../orchestration/support.js';
import { TEST_REDIS_DBS, repoRoot, tempDir } from '../support/env.js';
import { TOKEN } from './api-test-env.js';

const DB = TEST_REDIS_DBS['api/metrics'];
const HOST = 'metrics-h1';
const CLI = join(repoRoot, 'apps', 'cli', 'dist', 'main.js');
const auth = { authorization: `Bearer ${TOKEN}` };

let h: Harness;
let api: RunningApi;
let dir: string;
let prometheus: ChildProcess | undefined;
let promUrl = '';
let promLog = '';

before(async () => {
  for (const bin of ['prometheus', 'promtool']) {
    const found = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
    assert.equal(found.status, 0, `${bin} is not installed (Debian package prometheus; scripts/install-deps.sh installs it)`);
  }
  dir = tempDir('metrics-');
  h = await harness(DB, [{ hostId: HOST }]);
  api = await startApi({ redisUrl: h.url, host: '127.0.0.1', port: 0, token: TOKEN });
});

after(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const gone = new Promise((r) => prometheus!.once('exit', r));
    prometheus.kill('SIGTERM');
    await gone;
  }
  await api?.close();
  await h?.orch.down({ wait: true, timeoutMs: 60_000 }).catch(() => undefined);
  await h?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

async function apiGet(path: string, headers: Record<string, string> = auth): Promise<Response> {
  return fetch(`${api.url}${path}`, { headers });
}

interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

async function promQuery(query: string): Promise<{ status: string; error?: string; data?: { resultType: string; result: PromSample[] } }> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(query)}`);
  return (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: PromSample[] } };
}

/** The value of a query that must return exactly one sample (undefined while it does not). */
async function promValue(query: string): Promise<number | undefined> {
  const r = await promQuery(query);
  const result = r.data?.result ?? [];
  return result.length === 1 ? Number(result[0]!.value[1]) : undefined;
}

/** Waits until the query returns one sample whose value passes `ok` (a timed-out scrape makes series stale for a moment). */
async function promEventually(query: string, ok: (v: number) => boolean): Promise<number> {
  return until(
    `Prometheus: ${query}`,
    async () => {
      const v = await promValue(query);
      if (v === undefined || !ok(v)) throw new Error(`got ${v}`);
      return { v };
    },
    30_000,
    200,
  ).then((r) => r.v);
}

test('jobs run for real: a cold pull, three boots, one restart, one failure', { timeout: 400_000 }, async () => {
  const up = await fetch(`${api.url}/up?wait=true&timeout=300`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({
      service: [svc('web'), svc('crash', { command: '/bin/sh', args: ['-c', 'exit 3'], restart: 'on-failure', max_restarts: 1 })],
    }),
  });
  assert.equal(up.status, 200, await up.clone().text());
  await until(
    'web running and crash failed after its one restart',
    async () => {
      const s = Object.fromEntries(((await (await apiGet('/status')).json()) as { services: Array<{ name: string; status: string; restarts: number }> }).services.map((x) => [x.name, x]));
      return s.web?.status === 'running' && s.crash?.status === 'failed' && s.crash.restarts === 1;
    },
    300_000,
    200,
  );
});

test('GET /metrics: token required, Prometheus text format that promtool accepts, every recorded metric present', async () => {
  const anonymous = await apiGet('/metrics', {});
  assert.equal(anonymous.status, 401);
  assert.equal(((await anonymous.json()) as { code: string }).code, 'MC_API_UNAUTHORIZED');

  const res = await apiGet('/metrics');
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();
  writeFileSync(join(dir, 'metrics.txt'), text);
  // promtool parses with Prometheus's own parser, then lints (names, suffixes, units).
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  const problems = `${check.stdout}${check.stderr}`.split('\n').filter((l) => l.trim() !== '');
  assert.doesNotMatch(problems.join('\n'), /error|parsing/i, `promtool could not parse the exposition:\n${problems.join('\n')}`);
  // prom-client's own Node.js gauges end in _total (its naming, not ours): everything else must lint clean.
  const ours = problems.filter((l) => !l.startsWith('nodejs_'));
  assert.deepEqual(ours, [], `promtool lint problems:\n${problems.join('\n')}`);

  for (const family of [...Object.values(DURATIONS), ...Object.values(COUNTERS)]) {
    const type = family.name.endsWith('_total') ? 'counter' : 'histogram';
    assert.match(text, new RegExp(`^# TYPE ${family.name} ${type}$`, 'm'), family.name);
  }
  for (const line of [
    'monocore_cluster_up 1',
    'monocore_services{state="running"} 1',
    'monocore_services{state="failed"} 1',
    `monocore_service_restarts_total{host="${HOST}"} 1`,
    `monocore_unpack_duration_seconds_count{host="${HOST}"} 1`,
    `monocore_boot_duration_seconds_count{host="${HOST}",backend="qemu"} 3`,
    `monocore_host_up{host="${HOST}"} 1`,
    `monocore_queue_jobs{queue="pull-${HOST}",state="completed"} 2`,
    'monocore_deployments_total{kind="up"} 1',
  ]) {
    assert.ok(text.split('\n').includes(line), `missing line: ${line}`);
  }
  assert.match(text, /^process_cpu_seconds_total \d/m, "the API process's own metrics");
  assert.match(text, /^nodejs_heap_size_used_bytes \d/m);
});

test('a real Prometheus scrapes the API with the documented config and sees the jobs that ran', { timeout: 180_000 }, async () => {
  // The repository's scrape config, pointed at this API and its token, scraping every second.
  const tokenFile = join(dir, 'api.token');
  writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  const config = parseYaml(readFileSync(join(repoRoot, 'deploy', 'prometheus', 'prometheus.yml'), 'utf8')) as {
    global: Record<string, string>;
    rule_files: string[];
    scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }>; authorization: { credentials_file: string } }>;
  };
  const job = config.scrape_configs.find((c) => c.job_name === 'monocore');
  assert.ok(job, 'deploy/prometheus/prometheus.yml has a monocore job');
  job.static_configs = [{ targets: [new URL(api.url).host] }];
  job.authorization.credentials_file = tokenFile;
  config.global = { ...config.global, scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' };
  config.rule_files = config.rule_files.map((f) => join(repoRoot, 'deploy', 'prometheus', f));
  const configFile = join(dir, 'prometheus.yml');
  writeFileSync(configFile, stringifyYaml(config));
  const checked = spawnSync('promtool', ['check', 'config', configFile], { encoding: 'utf8' });
  assert.equal(checked.status, 0, `promtool check config:\n${checked.stdout}${checked.stderr}`);
  assert.match(checked.stdout, /SUCCESS: \d+ rules found/, 'the alert rules were checked too');

  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  prometheus = spawn(
    'prometheus',
    [`--config.file=${configFile}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  prometheus.stderr!.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-5000)));
  const target = await until(
    'Prometheus to scrape the API successfully',
    async () => {
      if (prometheus!.exitCode !== null) throw new Error(`prometheus exited ${prometheus!.exitCode}: ${promLog}`);
      const res = await fetch(`${promUrl}/api/v1/targets`).catch(() => undefined);
      if (!res?.ok) return undefined;
      const body = (await res.json()) as { data: { activeTargets: Array<{ health: string; lastError: string; labels: Record<string, string> }> } };
      return body.data.activeTargets.find((t) => t.labels.job === 'monocore' && t.health === 'up');
    },
    60_000,
    200,
  );
  assert.equal(target.lastError, '');

  // Wait for the first scrape's samples, then read everything from Prometheus.
  await promEventually('monocore_cluster_up', (v) => v === 1);
  const expect: Array<[string, number]> = [
    ['monocore_services{state="running"}', 1],
    ['monocore_services{state="failed"}', 1],
    ['sum(monocore_services)', 2],
    [`monocore_service_restarts_total{host="${HOST}"}`, 1],
    [`monocore_boot_duration_seconds_count{host="${HOST}", backend="qemu"}`, 3],
    [`monocore_boot_duration_seconds_bucket{host="${HOST}", le="+Inf"}`, 3],
    [`monocore_pull_duration_seconds_count{host="${HOST}", cache="cold"}`, 1],
    // The second service's pull of the same image joined the first or found it unpacked.
    [`sum(monocore_pull_duration_seconds_count{host="${HOST}"})`, 2],
    [`monocore_unpack_duration_seconds_count{host="${HOST}"}`, 1],
    ['monocore_deployments_total{kind="up"}', 1],
    ['sum(monocore_deployments_finished_total{kind="up"})', 1],
    [`monocore_queue_jobs{queue="pull-${HOST}", state="completed"}`, 2],
    [`monocore_queue_jobs{queue="host-${HOST}", state="failed"}`, 0],
    [`monocore_host_up{host="${HOST}"}`, 1],
    [`monocore_host_cpus{host="${HOST}"}`, 64],
    [`monocore_host_cpus_allocated{host="${HOST}"}`, 2],
    [`monocore_host_memory_bytes{host="${HOST}"}`, 8 * 1024 ** 3],
    [`monocore_host_services{host="${HOST}"}`, 2],
    ['count(process_cpu_seconds_total{job="monocore"})', 1],
  ];
  // A scrape that times out on a loaded machine marks the series stale until the next one: read them all from one good scrape.
  await until(
    'Prometheus to hold the expected values',
    async () => {
      const got = await Promise.all(expect.map(async ([q]) => promValue(q)));
      const wrong = expect.flatMap(([q, want], i) => (got[i] === want ? [] : [`${q}: want ${want}, got ${got[i]}`]));
      if (wrong.length > 0) throw new Error(wrong.join('; '));
      return true;
    },
    60_000,
    500,
  );
  // Durations are real: a boot under TCG and a cold pull take measurable time; their sums are positive.
  for (const q of ['monocore_boot_duration_seconds_sum', 'monocore_pull_duration_seconds_sum{cache="cold"}', 'monocore_unpack_duration_seconds_sum']) {
    await promEventually(`sum(${q})`, (v) => v > 0);
  }
  await promEventually(`monocore_host_heartbeat_age_seconds{host="${HOST}"}`, (v) => v >= 0);

  // The acceleration the host reports is the one its VM runs with: read it from QEMU's command line.
  const [pid] = vmCopies(['web'], h.homes).get('web') ?? [];
  assert.ok(pid, 'the web VM runs');
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  const accel = (argv[argv.indexOf('-accel') + 1] ?? '').split(',')[0];
  assert.ok(accel, argv.join(' '));
  await promEventually(`monocore_host_info{host="${HOST}", backend="qemu", accel="${accel}", version!=""}`, (v) => v === 1);

  // Every documented query and every dashboard panel evaluates against the real data.
  const queries = [...documentedQueries(), ...dashboardQueries()];
  assert.ok(queries.length >= 20, `found ${queries.length} queries`);
  for (const { where, expr } of queries) {
    const r = await promQuery(expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '5m').replaceAll('$job', '.*').replaceAll('$host', '.*'));
    assert.equal(r.status, 'success', `${where}: ${expr}\n${r.error ?? ''}`);
  }
});

test('GET /hosts and `monocore hosts` (table and --json): capacity, free resources, backend, acceleration, version, heartbeat', async () => {
  const res = await apiGet('/hosts');
  assert.equal(res.status, 200);
  const { hosts } = (await res.json()) as { hosts: Array<Record<string, unknown>> };
  assert.equal(hosts.length, 1);
  const host = hosts[0]!;
  assert.equal(host.id, HOST);
  assert.equal(host.alive, true);
  assert.deepEqual(host.backends, ['qemu']);
  assert.match(String(host.accel), /^(kvm|hvf|tcg)$/);
  assert.match(String(host.backendDetail), /^qemu \((kvm|hvf|tcg)\)/);
  assert.equal(host.version, (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version);
  assert.equal(host.cpus, 64);
  assert.equal(host.usedCpus, 2);
  assert.equal(host.freeCpus, 62);
  assert.equal(host.freeRamMib, 8 * 1024 - 256);
  assert.deepEqual(Object.keys(host.allocations as object).sort(), ['crash', 'web']);
  assert.ok(typeof host.heartbeatAgeMs === 'number' && host.heartbeatAgeMs >= 0);
  assert.ok(!Number.isNaN(Date.parse(String(host.lastHeartbeatAt))));

  const docs = (await (await apiGet('/openapi.json')).json()) as { paths: Record<string, unknown>; components: { schemas: Record<string, unknown> } };
  assert.ok(docs.paths['/hosts'] && docs.paths['/metrics'], 'both routes are in the OpenAPI document');
  assert.ok(docs.components.schemas.HostStatus, 'HostStatus schema');

  const env = { ...process.env, MONOCORE_API_URL: api.url, MONOCORE_API_TOKEN: TOKEN };
  const table = await cli(['hosts'], env);
  assert.equal(table.status, 0, table.stderr);
  const [header, row, extra] = table.stdout.trimEnd().split('\n');
  assert.match(header ?? '', /^HOST\s+STATE\s+BACKEND\s+ACCEL\s+VERSION\s+CPUS\s+FREE CPUS\s+MEMORY MiB\s+FREE MiB\s+SPARES\s+SERVICES\s+HEARTBEAT$/);
  assert.match(row ?? '', new RegExp(`^${HOST}\\s+alive\\s+qemu\\s+${String(host.accel)}\\s+\\S+\\s+2/64\\s+62\\s+256/8192\\s+7936\\s+-\\s+2\\s+\\d+s ago$`)); // no spares: services never have one
  assert.equal(extra, undefined);

  const json = await cli(['hosts', '--json'], env);
  assert.equal(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { hosts: Array<{ id: string; accel: string }> };
  assert.deepEqual(parsed.hosts.map((x) => [x.id, x.accel]), [[HOST, host.accel]]);

  const denied = await cli(['hosts'], { ...env, MONOCORE_API_TOKEN: '' });
  assert.equal(denied.status, 1, 'without the token: the failure exit code');
  assert.match(denied.stderr, /token/);
});

/** Runs the CLI without blocking: the API it talks to runs in this very process. */
function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Every ```promql block of docs/METRICS.md. */
function documentedQueries(): Array<{ where: string; expr: string }> {
  const text = readFileSync(join(repoRoot, 'docs', 'METRICS.md'), 'utf8');
  return [...text.matchAll(/```promql\n([\s\S]*?)```/g)].map((m) => ({ where: 'docs/METRICS.md', expr: (m[1] ?? '').trim() }));
}

/** Every target expression of the Grafana dashboard, and its template variables' queries. */
function dashboardQueries(): Array<{ where: string; expr: string }> {
  const dash = JSON.parse(readFileSync(join(repoRoot, 'deploy', 'grafana', 'monocore-dashboard.json'), 'utf8')) as {
    panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
  };
  return dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `dashboard panel "${p.title}"`, expr: t.expr })));
}
