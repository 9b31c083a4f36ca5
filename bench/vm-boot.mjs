// VM boot measurements with the engine's QemuBackend (run through bench/vm-boot.sh).
//   node bench/vm-boot.mjs breakdown N ROOTFS   where the boot time goes (medians of N boots)
//   node bench/vm-boot.mjs memory N ROOTFS      supervising-process RSS with N running VMs vs 0
//   node bench/vm-boot.mjs hang N ROOTFS        N sequential boots with a 60 s watchdog: hang rate
// Env: MONOCORE_HOME (initramfs cache), MONOCORE_KERNEL_DIR.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MonocoreHome, QemuBackend } from '../libs/engine/dist/index.js';

const [mode, nArg, rootfs] = process.argv.slice(2);
const n = Number(nArg ?? 10);
const backend = new QemuBackend({ home: new MonocoreHome() });
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const spec = (id, over = {}) => ({
  id, rootfs, command: '/bin/true', args: [], env: ['PATH=/bin'], cpus: 1, ramMib: 256, volumes: [], ports: [],
  stateDir: mkdtempSync(join(tmpdir(), `bench-${id}-`)), network: { mode: 'none' }, bootTimeoutMs: 60_000, ...over,
});
await backend.prepare();

if (mode === 'breakdown') {
  const rows = [];
  for (let i = 0; i < n; i++) {
    const s = spec(`bd${i}`);
    const t0 = Date.now();
    const h = await backend.start(s);
    const exit = await h.wait();
    const total = Date.now() - t0;
    if (exit.exitCode !== 0) throw new Error(JSON.stringify(exit));
    const t = h.timings;
    const con = readFileSync(h.consoleLog, 'utf8');
    const mods = Number(/monocore-init\[([\d.]+)\]: modules loaded/.exec(con)?.[1]);
    const initStart = Number(/monocore-init\[([\d.]+)\]: start/.exec(con)?.[1]);
    rows.push({
      // host ms from spawn until the guest clock starts ~ QEMU start + loading kernel/initrd
      hypervisorMs: t.initMs - t.guestInitUptime * 1000,
      kernelMs: initStart * 1000, // guest uptime when /init starts
      modulesMs: (mods - initStart) * 1000,
      initSetupMs: (t.guestStartedUptime - mods) * 1000, // spec, mounts, network, fork+exec
      commandMs: (t.guestExitUptime - t.guestStartedUptime) * 1000,
      poweroffMs: total - t.exitMs, // report -> QEMU gone -> streams drained
      totalMs: total,
    });
    rmSync(s.stateDir, { recursive: true, force: true });
  }
  const keys = Object.keys(rows[0]);
  console.log(JSON.stringify(Object.fromEntries(keys.map((k) => [k, Math.round(median(rows.map((r) => r[k])))]))));
} else if (mode === 'memory') {
  // Everything a running service costs the host except its hypervisor process: the
  // supervisor's memory (RSS and JS heap, after GC) with n VMs vs with none — after one
  // VM was started and stopped, so lazy loading and JIT warm-up are not counted — plus
  // any other process per VM (setpriv execs QEMU, so there should be none).
  const settle = async () => { for (let i = 0; i < 3; i++) { globalThis.gc?.(); await new Promise((r) => setTimeout(r, 300)); } };
  const warm = await backend.start(spec('mem-warm', { command: '/bin/sleep', args: ['1000'], ramMib: 128 }));
  await warm.started;
  await warm.kill();
  await settle();
  const base = process.memoryUsage();
  const hs = [];
  for (let i = 0; i < n; i++) {
    const h = await backend.start(spec(`mem${i}`, { command: '/bin/sleep', args: ['1000'], ramMib: 128 }));
    await h.started;
    hs.push(h);
  }
  await settle();
  const withVms = process.memoryUsage();
  const children = readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  const comm = (pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  const others = children.filter((pid) => !comm(pid).startsWith('qemu-system')).map((pid) => `${pid}:${comm(pid)}`);
  const qemuRss = hs.map((h) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${h.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024);
  await Promise.all(hs.map((h) => h.kill()));
  const mib = (b) => +(b / 2 ** 20).toFixed(2);
  console.log(JSON.stringify({
    vms: n,
    supervisorRssMiB: { base: mib(base.rss), withVms: mib(withVms.rss), perVm: mib((withVms.rss - base.rss) / n) },
    supervisorHeapMiB: { base: mib(base.heapUsed + base.external), withVms: mib(withVms.heapUsed + withVms.external), perVm: mib((withVms.heapUsed + withVms.external - base.heapUsed - base.external) / n) },
    otherProcessesPerVm: others.length / n,
    otherProcesses: others,
    qemuRssMedianMiB: Math.round(median(qemuRss)),
  }));
} else if (mode === 'hang') {
  let hangs = 0, failures = 0;
  const times = [];
  for (let i = 0; i < n; i++) {
    const s = spec(`hang${i}`);
    const t0 = Date.now();
    const exit = await (await backend.start(s)).wait();
    times.push(Date.now() - t0);
    if (exit.reason === 'boot-timeout') hangs++;
    else if (exit.exitCode !== 0) { failures++; console.error(JSON.stringify(exit)); }
    rmSync(s.stateDir, { recursive: true, force: true });
  }
  console.log(JSON.stringify({ boots: n, hangs, failures, medianMs: median(times), maxMs: Math.max(...times) }));
} else {
  console.error('usage: node bench/vm-boot.mjs breakdown|memory|hang N ROOTFS');
  process.exit(2);
}
