// Fast start (issue 11): starts from a template against a bare cold boot, side by side in one run.
//   node bench/fast-start.mjs [ROUNDS=10] [IDLE=10]
// Baseline ("bare"): the issue's own — QEMU microvm under TCG, the same kernel, a busybox
// initramfs (built here: static busybox + the 9p modules) whose /init mounts a 9p share of the
// image's unpacked rootfs, runs `true` in it and powers off; nothing of monocore. Wall time from
// spawn to QEMU's exit.
// monocore, as in production: the API and one worker as their own processes on the test Redis
// (database 41, flushed), the busybox test image, a fresh MONOCORE_HOME. One warm-up sandbox
// makes the image's template first; then each round alternates, so all see the same machine:
//   bare      the baseline above
//   sandbox   POST /sandboxes (wait) + POST /sandboxes/:id/exec `echo` until its output is back
//             (one kept-alive connection); DELETE after the clock stops. With the worker's spares
//             on (MONOCORE_SPARES, default 1; docs/SNAPSHOTS.md "Spares") it adopts the spare the
//             previous one left ("template+spare" in `boots`); the round then waits SPARE_SETTLE_MS
//             so the next spare's load does not overlap the next timed start. MONOCORE_SPARES=0
//             measures plain template restores.
//   run       `monocore run -q IMAGE -- true` (the CLI, its own backend, the same home)
//   fork      POST /sandboxes/:id/fork of a running 256 MiB sandbox + exec `echo` in the child
// Then IDLE sandboxes restored from the one template, left idle 10 s: per sandbox, QEMU's
// proportional resident memory (PSS: pages shared between processes count once), guest RAM
// and the rest apart; and the size of the template's state file (512 MiB guests by default).
// Env: MONOCORE_TEST_REDIS_URL, MONOCORE_TEST_IMAGE, MONOCORE_KERNEL_DIR (or MONOCORE_TEST_KERNEL_DIR).
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startApiAndWorker } from './support/api-worker-stack.mjs';

const ROUNDS = Number(process.argv[2] ?? 10);
const IDLE = Number(process.argv[3] ?? 10);
const env = process.env;
const redisUrl = `${env.MONOCORE_TEST_REDIS_URL.replace(/\/\d*$/, '')}/41`;
const image = env.MONOCORE_TEST_IMAGE;
const kernelDir = env.MONOCORE_KERNEL_DIR ?? env.MONOCORE_TEST_KERNEL_DIR;
const root = new URL('..', import.meta.url).pathname;
const home = mkdtempSync(join(tmpdir(), 'mc-bench-fast-'));
const work = mkdtempSync(join(tmpdir(), 'mc-bench-bare-'));
const children = [];
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const round = (x, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
const cli = join(root, 'apps/cli/dist/main.js');
/** After a sandbox start: the worker's next spare is made ~0.2 s after its agent answered and loads in ~0.5 s. */
const SPARE_SETTLE_MS = Number(env.SPARE_SETTLE_MS ?? 1500);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function cleanup() {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 3000));
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(home, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}

/** The baseline's initramfs: static busybox, the 9p modules in load order, an /init script. */
function bareInitramfs() {
  const version = readFileSync(join(kernelDir, 'version'), 'utf8').trim();
  const dir = join(work, 'initramfs');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'mnt', 'mod']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync('/bin/busybox', join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  // One module per modprobe call (further arguments would be that module's parameters).
  const deps = ['virtio_mmio', '9pnet_virtio', '9p'].map((m) => execFileSync('modprobe', ['-d', kernelDir, '-S', version, '--show-depends', m], { encoding: 'utf8' })).join('');
  const mods = [...new Set([...deps.matchAll(/^insmod (\S+)/gm)].map((m) => m[1]))];
  const names = mods.map((m, i) => {
    const name = `${i}-${m.split('/').pop()}`;
    copyFileSync(m, join(dir, 'mod', name));
    return name;
  });
  writeFileSync(
    join(dir, 'init'),
    [
      '#!/bin/busybox sh',
      '/bin/busybox mount -t proc proc /proc',
      ...names.map((n) => `/bin/busybox insmod /mod/${n}`),
      // The virtio device is probed asynchronously after insmod: retry until its channel exists.
      'i=0; until /bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,ro root /mnt 2>/dev/null; do i=$((i+1)); [ $i -gt 500 ] && echo "9p mount failed" && break; /bin/busybox usleep 2000; done',
      '/bin/busybox chroot /mnt /bin/true && echo "bare: true ran"',
      '/bin/busybox poweroff -f',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const cpio = join(work, 'bare.cpio');
  execFileSync('sh', ['-c', `cd "${dir}" && find . | cpio -o -H newc --quiet > "${cpio}"`]);
  return { cpio, modules: names.length };
}

function bareBoot(initrd, rootfs) {
  return new Promise((resolve, reject) => {
    const khz = Math.round(Number(/cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 0) * 1000);
    const t0 = performance.now();
    const q = spawn('qemu-system-x86_64', [
      '-M', 'microvm,x-option-roms=off,rtc=on,isa-serial=on', '-accel', 'tcg,thread=single', '-cpu', 'max,erms=off',
      '-m', '256', '-smp', '1', '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-no-reboot',
      '-serial', 'stdio', '-kernel', join(kernelDir, 'vmlinux'), '-initrd', initrd,
      '-append', `console=ttyS0 panic=-1 reboot=t quiet no_timer_check ${khz ? `tsc_early_khz=${khz} ` : ''}rdinit=/init`,
      '-fsdev', `local,id=root,path=${rootfs},security_model=none,readonly=on`, '-device', 'virtio-9p-device,fsdev=root,mount_tag=root',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let console_ = '';
    q.stdout.on('data', (d) => (console_ += d));
    q.stderr.on('data', (d) => (console_ += d));
    q.on('exit', () => {
      const ms = performance.now() - t0;
      if (!console_.includes('bare: true ran')) reject(new Error(`bare boot did not run true: ${console_.slice(-2000)}`));
      else resolve(ms);
    });
  });
}

try {
  const r = new Redis(redisUrl);
  await r.flushdb();
  await r.quit();
  const bare = bareInitramfs();

  const stack = await startApiAndWorker({ env, redisUrl, home, kernelDir, hostId: 'benchfast' });
  children.push(...stack.children);
  const { url } = stack;
  const { hostname, port } = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const json = (method, path, body) =>
    new Promise((resolve, reject) => {
      const q = http.request({ method, path, agent, hostname, port, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
        const parts = [];
        res.on('data', (c) => parts.push(c));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString();
          if (res.statusCode >= 300) reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`));
          else resolve(text ? JSON.parse(text) : undefined);
        });
      });
      q.on('error', reject);
      q.end(body ? JSON.stringify(body) : undefined);
    });
  for (let i = 0; ; i++) {
    if ((await json('GET', '/hosts')).hosts.some((h) => h.alive)) break;
    if (i > 600) throw new Error('no worker registered');
    await new Promise((res) => setTimeout(res, 100));
  }
  const rootfs = JSON.parse(execFileSync(process.execPath, [cli, 'pull', '-q', '--json', image], { env: { ...env, MONOCORE_HOME: home }, encoding: 'utf8' })).rootfs;

  // Warm-up: the first sandbox boots cold and saves the template; the first run saves the template
  // of run's VM shape (or uses the sandbox's when the shapes agree); the second says where it came from.
  const warm = await json('POST', '/sandboxes', { image });
  out({ measure: 'warm-up sandbox', boot: warm.boot });
  await json('DELETE', `/sandboxes/${warm.id}`);
  execFileSync(process.execPath, [cli, 'run', '-q', image, '--', 'true'], { env: { ...env, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: kernelDir } });
  const runBoot = JSON.parse(execFileSync(process.execPath, [cli, 'run', '--json', image, '--', 'true'], { env: { ...env, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: kernelDir }, encoding: 'utf8' })).boot;
  out({ measure: 'warm-up run', boot: runBoot });
  if (runBoot?.from !== 'template') throw new Error(`monocore run did not start from a template: ${JSON.stringify(runBoot)}`);
  await bareBoot(bare.cpio, rootfs);

  // The parent of the forks: a running 256 MiB sandbox with a background process.
  const parent = await json('POST', '/sandboxes', { image, ram: 256, disk: 256 });
  await json('POST', `/sandboxes/${parent.id}/exec`, { cmd: ['sh', '-c', '(while true; do sleep 1; done) >/dev/null 2>&1 &'] });
  // The parent's shape (256 MiB) differs from the measured sandboxes': one start of theirs makes
  // their spare the one the worker keeps (one shape by default).
  await json('DELETE', `/sandboxes/${(await json('POST', '/sandboxes', { image })).id}`);
  await sleep(SPARE_SETTLE_MS);
  const times = { bare: [], sandbox: [], run: [], fork: [] };
  const forkPauses = [];
  const boots = [];
  const parts = [];
  for (let i = 0; i < ROUNDS; i++) {
    times.bare.push(await bareBoot(bare.cpio, rootfs));
    let t0 = performance.now();
    const sb = await json('POST', '/sandboxes', { image });
    const tCreated = performance.now() - t0;
    const e = await json('POST', `/sandboxes/${sb.id}/exec`, { cmd: ['echo', 'hi'] });
    times.sandbox.push(performance.now() - t0);
    parts.push({ create: Math.round(tCreated), queued_to_running: Date.parse(sb.started_at) - Date.parse(sb.created_at), first_exec: Math.round(performance.now() - t0 - tCreated) });
    if (e.stdout !== 'hi\n') throw new Error(`exec said ${JSON.stringify(e)}`);
    boots.push(/restored ahead/.test(sb.boot?.reason ?? '') ? `${sb.boot.from}+spare` : sb.boot?.from);
    await json('DELETE', `/sandboxes/${sb.id}`);
    await sleep(SPARE_SETTLE_MS);
    t0 = performance.now();
    execFileSync(process.execPath, [cli, 'run', '-q', image, '--', 'true'], { env: { ...env, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: kernelDir } });
    times.run.push(performance.now() - t0);
    t0 = performance.now();
    const [child] = (await json('POST', `/sandboxes/${parent.id}/fork`, { count: 1 })).sandboxes;
    const f = await json('POST', `/sandboxes/${child.id}/exec`, { cmd: ['echo', 'hi'] });
    times.fork.push(performance.now() - t0);
    if (f.stdout !== 'hi\n') throw new Error(`fork exec said ${JSON.stringify(f)}`);
    forkPauses.push(Number(/parent paused (\d+) ms/.exec(child.boot?.reason ?? '')?.[1]));
    await json('DELETE', `/sandboxes/${child.id}`);
  }
  await json('DELETE', `/sandboxes/${parent.id}`);
  const b = median(times.bare);
  out({
    measure: 'start',
    rounds: ROUNDS,
    bare_cold_boot_ms: { median: Math.round(b), all: times.bare.map(Math.round) },
    sandbox_create_to_first_exec_ms: { median: Math.round(median(times.sandbox)), all: times.sandbox.map(Math.round), boots },
    sandbox_ratio: round(median(times.sandbox) / b),
    sandbox_parts_ms: parts,
    run_true_ms: { median: Math.round(median(times.run)), all: times.run.map(Math.round) },
    run_ratio: round(median(times.run) / b),
    fork_256mib_to_child_exec_ms: { median: Math.round(median(times.fork)), all: times.fork.map(Math.round), parent_paused_ms: forkPauses },
    fork_ratio: round(median(times.fork) / b),
    spares: env.MONOCORE_SPARES ?? 'default (1)',
    load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  });

  // Idle sandboxes restored from one template (256 MiB guests).
  if (IDLE > 0) {
    const ids = [];
    const first = await json('POST', '/sandboxes', { image, ram: 256, disk: 256 }); // makes the 256 MiB template
    ids.push(first.id);
    for (let i = 0; i < IDLE; i++) ids.push((await json('POST', '/sandboxes', { image, ram: 256, disk: 256 })).id);
    await new Promise((res) => setTimeout(res, 10_000));
    const per = [];
    // Each sandbox's QEMU by its pid record (`<home>/run/vm-<id>-<pid>.json`): one that adopted a
    // spare names the spare's dir in its command line, not its own.
    const records = readdirSync(join(home, 'run'));
    for (const id of ids.slice(1)) {
      const pid = records.map((n) => (n.startsWith(`vm-${id}-`) ? /-(\d+)\.json$/.exec(n)?.[1] : undefined)).find(Boolean);
      if (!pid) throw new Error(`no pid record for sandbox ${id}`);
      let guest = 0;
      let other = 0;
      for (const m of readFileSync(`/proc/${pid}/smaps`, 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
        const file = m.split('\n')[0].split(/\s+/)[5];
        const sizeKb = Number(/^Size:\s+(\d+)/m.exec(m)?.[1] ?? 0);
        const pssKb = Number(/^Pss:\s+(\d+)/m.exec(m)?.[1] ?? 0);
        if (sizeKb === 256 * 1024 && !file && guest === 0) guest += pssKb;
        else other += pssKb;
      }
      per.push({ guest: guest / 1024, other: other / 1024 });
    }
    out({
      measure: 'idle restored sandboxes',
      sandboxes: per.length,
      guest_ram_mib: 256,
      guest_ram_resident_pss_mib_median: round(median(per.map((p) => p.guest)), 1),
      qemu_outside_guest_ram_pss_mib_median: round(median(per.map((p) => p.other)), 1),
      total_pss_per_sandbox_mib_median: round(median(per.map((p) => p.guest + p.other)), 1),
    });
    for (const id of ids) await json('DELETE', `/sandboxes/${id}`);
  }
  const templates = [];
  const imagesDir = join(home, 'rootfs', 'images');
  for (const img of readdirSync(imagesDir)) {
    const dir = join(imagesDir, img, 'templates');
    let entries = [];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue; // no templates of this image (or not an image: .locks)
    }
    for (const t of entries.filter((d) => d.isDirectory() && /^[0-9a-f]{32}$/.test(d.name))) {
      const meta = JSON.parse(readFileSync(join(dir, t.name, 'meta.json'), 'utf8'));
      const st = statSync(join(dir, t.name, 'state.bin'));
      templates.push({ guest_ram_mib: meta.shape.ramMib, disk_mib: meta.shape.diskMib, state_bytes: st.size, save_ms: meta.saveMs });
    }
  }
  out({ measure: 'templates', templates });
} finally {
  await cleanup();
}
