// Sandboxes through the REST API, side by side with Docker in the same run (bench/sandbox.sh
// prepares the Docker engine and its image and runs this):
//   node bench/sandbox.mjs DOCKER_IMAGE [EXECS=100] [MIB=64] [FLOOD_MB=100] [IDLE=20]
// The API and the worker run as their own processes (apps/api/dist/main.js,
// apps/worker/dist/main.js), as between hosts, or with MONOCORE_BENCH_STACK=serve as one
// `monocore serve` process (bench/support/api-worker-stack.mjs), on the test Redis (database 40,
// flushed) with the busybox test image; Docker is Debian's dockerd through its Engine API (unix
// socket). Prints one JSON line per measure (each names the stack):
//   exec     EXECS sequential `true` on a running sandbox over one kept-alive HTTP connection,
//            against exec create + start + inspect of `true` in a running container; alternated
//            one by one so both see the same machine load. Median and p90 (ms).
//   files    MIB MiB of random bytes uploaded then downloaded (PUT then GET …/files), against
//            `docker cp` in then out; 3 rounds alternated; medians (s) and the ratios.
//   flood    a guest printing FLOOD_MB MB as fast as it can (`seq`) streamed as NDJSON; every
//            byte checked in order (sha256 against the same sequence made here); the worker's
//            and the API's peak RSS (VmHWM) before and after.
//   idle     IDLE more sandboxes (256 MiB RAM, 256 MiB disk each) left idle: per sandbox, the host
//            memory beyond its guest RAM = QEMU's proportional resident memory (PSS, so files
//            shared by all QEMUs count once) outside the guest-RAM mapping (the one mapping of
//            exactly the RAM size), with TCG's translated-code buffer (the rwx mapping) reported
//            apart too, + its share of the worker's and API's RSS growth.
// MONOCORE_BENCH_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`) is passed to the API's and the worker's node.
// Env: MONOCORE_TEST_REDIS_URL, MONOCORE_TEST_IMAGE, MONOCORE_KERNEL_DIR (or MONOCORE_TEST_KERNEL_DIR), DOCKER_HOST.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { benchStack, startApiAndWorker } from './support/api-worker-stack.mjs';

const [dockerImage, execsArg, mibArg, floodArg, idleArg] = process.argv.slice(2);
if (!dockerImage) throw new Error('usage: node bench/sandbox.mjs DOCKER_IMAGE [EXECS] [MIB] [FLOOD_MB] [IDLE]');
const EXECS = Number(execsArg ?? 100);
const MIB = Number(mibArg ?? 64);
const FLOOD_MB = Number(floodArg ?? 100);
const IDLE = Number(idleArg ?? 20);
const env = process.env;
const redisUrl = `${env.MONOCORE_TEST_REDIS_URL.replace(/\/\d*$/, '')}/40`;
const image = env.MONOCORE_TEST_IMAGE;
const kernelDir = env.MONOCORE_KERNEL_DIR ?? env.MONOCORE_TEST_KERNEL_DIR;
const dockerSock = (env.DOCKER_HOST ?? 'unix:///var/run/docker.sock').replace(/^unix:\/\//, '');
const home = mkdtempSync(join(tmpdir(), 'mc-bench-sandbox-'));
const children = [];
const nodeArgs = (env.MONOCORE_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const stack = benchStack(env);
const out = (o) => process.stdout.write(`${JSON.stringify({ ...o, stack })}\n`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)];
const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const status = (pid, field) => Number((/^\S+:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`)) ?? '') ?? [])[1] ?? 0) / 1024;

async function cleanup() {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 3000));
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(home, { recursive: true, force: true });
}

try {
  const r = new Redis(redisUrl);
  await r.flushdb();
  await r.quit();

  // --- the stack: separate processes, or one monocore serve -----------------------------
  const running = await startApiAndWorker({ env, redisUrl, home, kernelDir, hostId: 'bench1', nodeArgs });
  children.push(...running.children);
  const { worker, api, url } = running;
  const { hostname, port } = new URL(url);
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
  /** One HTTP request over the kept-alive connection; resolves with {status, body: Buffer}. */
  const req = (method, path, body, headers = {}, agent = keepAlive, socketPath) =>
    new Promise((resolve, reject) => {
      const q = http.request({ method, path, agent, ...(socketPath ? { socketPath } : { hostname, port }), headers: { ...(body !== undefined && !Buffer.isBuffer(body) ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
        const parts = [];
        res.on('data', (c) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts) }));
        res.on('error', reject);
      });
      q.on('error', reject);
      if (body !== undefined) q.end(Buffer.isBuffer(body) ? body : JSON.stringify(body));
      else q.end();
    });
  const json = async (method, path, body) => {
    const r = await req(method, path, body);
    const parsed = r.body.length > 0 ? JSON.parse(r.body.toString()) : undefined;
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body}`);
    return parsed;
  };
  for (let i = 0; ; i++) {
    const hosts = await json('GET', '/hosts');
    if (hosts.hosts.some((h) => h.alive)) break;
    if (i > 600) throw new Error('no worker registered');
    await new Promise((r) => setTimeout(r, 100));
  }
  const sb = await json('POST', '/sandboxes', { image, ram: 512 });

  // --- Docker ---------------------------------------------------------------------------------
  const dockerAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const docker = async (method, path, body) => {
    const r = await req(method, path, body, {}, dockerAgent, dockerSock);
    if (r.status >= 300) throw new Error(`docker ${method} ${path}: ${r.status} ${r.body}`);
    return r.body.length > 0 && r.body[0] === 0x7b ? JSON.parse(r.body.toString()) : r.body;
  };
  const container = (await docker('POST', '/containers/create', { Image: dockerImage, Cmd: ['sleep', 'infinity'], HostConfig: { NetworkMode: 'none', AutoRemove: true } })).Id;
  children.push({ exitCode: null, kill: () => void docker('DELETE', `/containers/${container}?force=true`).catch(() => undefined) });
  await docker('POST', `/containers/${container}/start`);

  // --- (1) exec round trip ------------------------------------------------------------------
  const mcExec = async () => {
    const t0 = performance.now();
    const r = await json('POST', `/sandboxes/${sb.id}/exec`, { cmd: ['true'] });
    if (r.exit_code !== 0) throw new Error(`true exited ${r.exit_code}`);
    return performance.now() - t0;
  };
  const dockerExec = async () => {
    const t0 = performance.now();
    const { Id } = await docker('POST', `/containers/${container}/exec`, { Cmd: ['true'], AttachStdout: true, AttachStderr: true });
    await docker('POST', `/exec/${Id}/start`, { Detach: false, Tty: false });
    const info = await docker('GET', `/exec/${Id}/json`);
    if (info.ExitCode !== 0) throw new Error(`docker exec true exited ${info.ExitCode}`);
    return performance.now() - t0;
  };
  for (let i = 0; i < 5; i++) {
    await mcExec();
    await dockerExec();
  }
  const mc = [];
  const dk = [];
  for (let i = 0; i < EXECS; i++) {
    mc.push(await mcExec());
    dk.push(await dockerExec());
  }
  out({ measure: 'exec', n: EXECS, monocore_ms: { median: round(median(mc)), p90: round(pct(mc, 0.9)) }, docker_ms: { median: round(median(dk)), p90: round(pct(dk, 0.9)) }, ratio: round(median(mc) / median(dk), 2) });

  // --- (2) 64 MiB up and down ------------------------------------------------------------------
  const data = randomBytes(MIB << 20);
  const file = join(home, 'payload.bin');
  writeFileSync(file, data);
  const digest = createHash('sha256').update(data).digest('hex');
  const rounds = { mcUp: [], mcDown: [], dkIn: [], dkOut: [] };
  for (let i = 0; i < 3; i++) {
    let t0 = performance.now();
    const put = await req('PUT', `/sandboxes/${sb.id}/files?path=/tmp/payload.bin`, data, { 'content-type': 'application/octet-stream' });
    if (put.status !== 200) throw new Error(`PUT: ${put.status} ${put.body}`);
    rounds.mcUp.push(performance.now() - t0);
    t0 = performance.now();
    const got = await req('GET', `/sandboxes/${sb.id}/files?path=/tmp/payload.bin`);
    rounds.mcDown.push(performance.now() - t0);
    if (createHash('sha256').update(got.body).digest('hex') !== digest) throw new Error('download differs');
    t0 = performance.now();
    execFileSync('docker', ['cp', file, `${container}:/tmp/payload.bin`]);
    rounds.dkIn.push(performance.now() - t0);
    t0 = performance.now();
    execFileSync('docker', ['cp', `${container}:/tmp/payload.bin`, join(home, 'back.bin')]);
    rounds.dkOut.push(performance.now() - t0);
  }
  const s = (xs) => round(median(xs) / 1000, 2);
  out({
    measure: 'files',
    mib: MIB,
    monocore_s: { upload: s(rounds.mcUp), download: s(rounds.mcDown), both: round(s(rounds.mcUp) + s(rounds.mcDown), 2) },
    docker_cp_s: { in: s(rounds.dkIn), out: s(rounds.dkOut), both: round(s(rounds.dkIn) + s(rounds.dkOut), 2) },
    ratio: round((median(rounds.mcUp) + median(rounds.mcDown)) / (median(rounds.dkIn) + median(rounds.dkOut)), 2),
  });

  // --- (3) a flooding guest -------------------------------------------------------------------
  {
    // seq 1 N prints about FLOOD_MB MB; the same sequence is hashed here.
    let n = 0;
    let size = 0;
    while (size < FLOOD_MB * 1e6) size += String(++n).length + 1;
    const expected = createHash('sha256');
    let chunk = '';
    for (let i = 1; i <= n; i++) {
      chunk += `${i}\n`;
      if (chunk.length > 1 << 20) {
        expected.update(chunk);
        chunk = '';
      }
    }
    expected.update(chunk);
    const before = { worker: status(worker.pid, 'VmHWM'), api: status(api.pid, 'VmHWM') };
    const hash = createHash('sha256');
    let got = 0;
    let rest = '';
    let exit;
    const t0 = performance.now();
    await new Promise((resolve, reject) => {
      const q = http.request({ method: 'POST', path: `/sandboxes/${sb.id}/exec`, hostname, port, agent: keepAlive, headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' } }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (d) => {
          const lines = (rest + d).split('\n');
          rest = lines.pop();
          for (const l of lines) {
            const o = JSON.parse(l);
            if (o.stream === 'stdout') {
              hash.update(o.data);
              got += Buffer.byteLength(o.data);
            } else if ('exit_code' in o || 'error' in o) exit = o;
          }
        });
        res.on('end', resolve);
        res.on('error', reject);
      });
      q.on('error', reject);
      q.end(JSON.stringify({ cmd: ['seq', '1', String(n)] }));
    });
    const secs = (performance.now() - t0) / 1000;
    out({
      measure: 'flood',
      mb: round(size / 1e6),
      every_byte_in_order: got === size && hash.digest('hex') === expected.digest('hex'),
      exit,
      mb_per_s: round(size / 1e6 / secs),
      worker_peak_rss_mib: { before: round(before.worker), after: round(status(worker.pid, 'VmHWM')) },
      api_peak_rss_mib: { before: round(before.api), after: round(status(api.pid, 'VmHWM')) },
    });
  }

  // --- (4) idle sandboxes -----------------------------------------------------------------
  if (IDLE > 0) {
    const rss0 = { worker: status(worker.pid, 'VmRSS'), api: status(api.pid, 'VmRSS') };
    const ids = [];
    for (let i = 0; i < IDLE; i += 2) {
      const batch = await Promise.all([0, 1].filter((k) => i + k < IDLE).map(() => json('POST', '/sandboxes', { image, ram: 256, disk: 256 })));
      ids.push(...batch.map((b) => b.id));
    }
    await new Promise((r) => setTimeout(r, 15_000)); // idle: boot work settles
    const rss1 = { worker: status(worker.pid, 'VmRSS'), api: status(api.pid, 'VmRSS') };
    const per = [];
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      let cmd;
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      if (!/qemu-system/.test(cmd) || !ids.some((id) => cmd.includes(`${home}/sandboxes/${id}/`))) continue;
      // The guest's RAM is QEMU's one anonymous mapping of exactly -m; TCG's translated code is
      // its one rwx anonymous mapping (tb-size); everything else is QEMU's own too.
      const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
      let guest = 0;
      let other = 0;
      let code = 0;
      for (const m of smaps) {
        const [range, perms, , , , file] = m.split('\n')[0].split(/\s+/);
        const sizeKb = Number(/^Size:\s+(\d+)/m.exec(m)?.[1] ?? 0);
        const pssKb = Number(/^Pss:\s+(\d+)/m.exec(m)?.[1] ?? 0);
        if (sizeKb === 256 * 1024 && !file && guest === 0) guest += pssKb;
        else {
          other += pssKb;
          if (perms === 'rwxp' && !file) code += pssKb;
        }
        void range;
      }
      per.push({ guestMib: guest / 1024, qemuMib: other / 1024, codeMib: code / 1024 });
    }
    const workerShare = (rss1.worker - rss0.worker) / IDLE;
    const apiShare = api === worker ? 0 : (rss1.api - rss0.api) / IDLE; // serve: one process, counted once
    const qemu = per.map((p) => p.qemuMib);
    out({
      measure: 'idle',
      sandboxes: per.length,
      guest_ram_mib: 256,
      guest_ram_resident_mib_median: round(median(per.map((p) => p.guestMib))),
      qemu_outside_guest_ram_pss_mib: { median: round(median(qemu)), max: round(Math.max(...qemu)) },
      of_which_tcg_code_buffer_mib: round(median(per.map((p) => p.codeMib))),
      tcg_code_mib_setting: env.MONOCORE_TCG_CODE_MIB ?? 'default',
      worker_rss_growth_per_sandbox_mib: round(workerShare),
      api_rss_growth_per_sandbox_mib: round(apiShare),
      host_memory_beyond_guest_ram_per_sandbox_mib: round(median(qemu) + workerShare + apiShare),
    });
    for (const id of ids) await json('DELETE', `/sandboxes/${id}`);
  }
  await json('DELETE', `/sandboxes/${sb.id}`);
} finally {
  await cleanup();
}
