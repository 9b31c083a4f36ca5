// What KSM could share between sandboxes restored from one template (docs/THREATS.md "Memory
// sharing": monocore turns merging off by default; MONOCORE_MEM_MERGE=1 is the operator's opt-in).
//   node bench/template-sharing.mjs [N=6] [SECONDS=120] [RAM_MIB=256] [PAGES_TO_SCAN]
// With MONOCORE_MEM_MERGE=1 (QEMU keeps its default mem-merge=on: guest RAM is madvised
// MERGEABLE), the engine's QemuBackend boots one sandbox of the test image cold (it saves the
// template) and ends it, then restores N idle sandboxes of RAM_MIB from that template. It samples
// each QEMU's RSS and PSS (/proc/PID/smaps_rollup) and the PSS of its guest-RAM mapping
// (/proc/PID/smaps), turns KSM on (/sys/kernel/mm/ksm/run = 1; the previous value is written
// back at the end), and samples every 10 s for SECONDS: per sandbox, the medians and means; KSM's
// counters; ksmd's CPU time (a kernel thread: its share of one core over each interval).
// PAGES_TO_SCAN sets KSM's pages per 20 ms wake-up for the run (the kernel's default, 100, scans
// ~20 MB/s: one pass over 6 × 256 MiB takes ~80 s and pages merge only from the second pass);
// its previous value is written back at the end too.
// Needs root (KSM's sysfs). Env: MONOCORE_TEST_IMAGE, MONOCORE_KERNEL_DIR (or MONOCORE_TEST_KERNEL_DIR).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

process.env.MONOCORE_MEM_MERGE = '1'; // before the backend reads it
const { MonocoreHome, QemuBackend, pullImage, closeDefaultRegistryClient } = await import('../libs/engine/dist/index.js');

const N = Number(process.argv[2] ?? 6);
const SECONDS = Number(process.argv[3] ?? 120);
const RAM = Number(process.argv[4] ?? 256);
const PAGES_TO_SCAN = process.argv[5];
const SAMPLE_S = 10;
const KSM = '/sys/kernel/mm/ksm';
const env = process.env;
const kernelDir = env.MONOCORE_KERNEL_DIR ?? env.MONOCORE_TEST_KERNEL_DIR;
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const mib = (kb) => Math.round((kb / 1024) * 10) / 10;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ksmRead = (name) => readFileSync(join(KSM, name), 'utf8').trim();
const pageKb = 4;

const root = mkdtempSync(join(tmpdir(), 'mc-bench-sharing-'));
const home = new MonocoreHome(join(root, 'home'));
mkdirSync(home.root, { recursive: true });
const vms = [];
const ksmBefore = ksmRead('run');
const scanBefore = ksmRead('pages_to_scan');

/** One QEMU's memory: RSS and PSS of the whole process, PSS of its guest RAM (the anonymous mapping of RAM_MIB). */
function memory(pid) {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (text, name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  let guestPss = 0;
  let guestRss = 0;
  for (const m of readFileSync(`/proc/${pid}/smaps`, 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const file = m.split('\n')[0].split(/\s+/)[5];
    if (!file && field(m, 'Size') === RAM * 1024 && guestPss === 0) {
      guestPss = field(m, 'Pss');
      guestRss = field(m, 'Rss');
    }
  }
  return { rss: field(rollup, 'Rss'), pss: field(rollup, 'Pss'), guestRss, guestPss };
}

function sample() {
  const per = vms.map((vm) => memory(vm.pid));
  const mean = (f) => mib(per.reduce((s, p) => s + f(p), 0) / per.length);
  return {
    pss_mib_mean: mean((p) => p.pss),
    guest_ram_pss_mib_mean: mean((p) => p.guestPss),
    rss_mib_median: mib(median(per.map((p) => p.rss))),
    pss_mib_median: mib(median(per.map((p) => p.pss))),
    guest_ram_rss_mib_median: mib(median(per.map((p) => p.guestRss))),
    guest_ram_pss_mib_median: mib(median(per.map((p) => p.guestPss))),
    qemu_outside_guest_ram_pss_mib_median: mib(median(per.map((p) => p.pss - p.guestPss))),
    total_pss_mib: mib(per.reduce((s, p) => s + p.pss, 0)),
  };
}

/** ksmd's CPU time in seconds (utime + stime of the kernel thread). */
function ksmdCpuS() {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'ksmd') continue;
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) / 100; // fields 14, 15 (USER_HZ = 100)
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

const ksmCounters = () => ({
  pages_shared: Number(ksmRead('pages_shared')),
  pages_sharing: Number(ksmRead('pages_sharing')),
  saved_mib: mib(Number(ksmRead('pages_sharing')) * pageKb),
  full_scans: Number(ksmRead('full_scans')),
});

try {
  const pulled = await pullImage(env.MONOCORE_TEST_IMAGE, { home });
  await closeDefaultRegistryClient();
  const qemu = new QemuBackend({ home, kernelDir, bootTimeoutMs: 60_000 });
  const spec = (id) => ({
    id, rootfs: pulled.rootfs, sandbox: true, command: '', args: [], env: ['PATH=/bin'], workdir: '/', cpus: 1, ramMib: RAM, diskMib: 256,
    volumes: [], ports: [], stateDir: mkdtempSync(join(root, `st-${id}-`)), network: { mode: 'none' }, bootTimeoutMs: 60_000,
  });
  const first = await qemu.start(spec('tpl'));
  await first.started;
  await first.agent();
  out({ measure: 'template', boot: first.boot });
  await first.kill();
  for (let i = 0; i < N; i++) {
    const vm = await qemu.start(spec(`s${i}`));
    vms.push(vm);
    await vm.started;
    await vm.agent();
    if (vm.boot.from !== 'template') throw new Error(`sandbox ${i} was not restored: ${vm.boot.reason}`);
    const argv = readFileSync(`/proc/${vm.pid}/cmdline`, 'utf8').split('\0');
    if (argv[argv.indexOf('-M') + 1].includes('mem-merge=off')) throw new Error('MONOCORE_MEM_MERGE=1 did not reach QEMU');
  }
  await sleep(10_000);
  out({ measure: 'before KSM (restored, idle 10 s)', sandboxes: N, guest_ram_mib: RAM, ksm_run: ksmBefore, ...sample(), ...ksmCounters() });

  if (PAGES_TO_SCAN) writeFileSync(join(KSM, 'pages_to_scan'), PAGES_TO_SCAN);
  writeFileSync(join(KSM, 'run'), '1');
  const knobs = Object.fromEntries(['pages_to_scan', 'sleep_millisecs', 'advisor_mode', 'use_zero_pages'].flatMap((k) => { try { return [[k, ksmRead(k)]]; } catch { return []; } }));
  let cpu0 = ksmdCpuS();
  const cpuStart = cpu0;
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < SECONDS * 1000) {
    await sleep(SAMPLE_S * 1000);
    const cpu = ksmdCpuS();
    last = { measure: 'KSM on', s: Math.round((Date.now() - t0) / 1000), ...sample(), ...ksmCounters(), ksmd_cpu_pct_of_one_core: cpu !== undefined && cpu0 !== undefined ? Math.round(((cpu - cpu0) / SAMPLE_S) * 1000) / 10 : null };
    cpu0 = cpu;
    out(last);
  }
  out({
    ...last,
    measure: 'after',
    sandboxes: N, guest_ram_mib: RAM, seconds: SECONDS, ksm_knobs: knobs,
    ksmd_cpu_s_total: cpuStart !== undefined && cpu0 !== undefined ? Math.round((cpu0 - cpuStart) * 10) / 10 : null,
    load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  });
} finally {
  writeFileSync(join(KSM, 'run'), ksmBefore); // as it was (0 stops ksmd and leaves merged pages until their QEMUs end)
  writeFileSync(join(KSM, 'pages_to_scan'), scanBefore);
  for (const vm of vms) await vm.kill().catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
}
