// Overhead of the libkrun backend's per-VM process, measured with the STUB
// libkrun (test/native/stub-libkrun.c, NOT the real libkrun: it cannot be
// installed here). What this measures is ours alone: spawning
// `unshare … node krun-child.js`, the overlay/bind mounts, loading libkrun via
// koffi and the krun_* calls, up to krun_start_enter; and the resident memory
// of that process, which stays for the VM's life because krun_start_enter
// turns this very process (Node runtime included) into the VMM.
//
// Usage (as root, after `npx tsc -b`): node bench/libkrun-child.mjs [runs]
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LibkrunBackend, MonocoreHome } from '@monocore/engine';

const runs = Number(process.argv[2] ?? 20);
const work = mkdtempSync(join(tmpdir(), 'mc-bench-libkrun-'));
const stub = join(work, 'libkrun.so.1');
execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-o', stub, new URL('../test/native/stub-libkrun.c', import.meta.url).pathname]);
const rootfs = join(work, 'rootfs');
mkdirSync(join(rootfs, 'bin'), { recursive: true });
const backend = new LibkrunBackend({ home: new MonocoreHome(join(work, 'home')), libkrunPath: stub });
const spec = (i) => ({
  id: `b${i}`, rootfs, command: '/bin/true', args: [], env: ['PATH=/bin'], cpus: 1, ramMib: 128,
  volumes: [], ports: [], stateDir: join(work, 'state', `b${i}`), network: { mode: 'none' },
});
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const enter = [];
const total = [];
process.env.STUB_LIBKRUN_ENTER = 'exit:0';
for (let i = 0; i < runs; i++) {
  const t0 = performance.now();
  const vm = await backend.start(spec(i));
  await vm.started;
  enter.push(vm.enterMs);
  await vm.wait();
  total.push(performance.now() - t0);
}

// Memory of a VM process parked in krun_start_enter (the stub pauses there).
process.env.STUB_LIBKRUN_ENTER = 'pause';
const rss = [];
const pss = [];
const priv = [];
for (let i = 0; i < 5; i++) {
  const vm = await backend.start(spec(`m${i}`));
  await vm.started;
  await new Promise((r) => setTimeout(r, 200));
  const rollup = readFileSync(`/proc/${vm.pid}/smaps_rollup`, 'utf8');
  const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)[1]);
  rss.push(kb('Rss') / 1024);
  pss.push(kb('Pss') / 1024);
  priv.push((kb('Private_Dirty') + kb('Private_Clean')) / 1024);
  await vm.kill();
}
rmSync(work, { recursive: true, force: true });
console.log(`runs=${runs}`);
console.log(`spawn -> krun_start_enter: median ${median(enter).toFixed(0)} ms (min ${Math.min(...enter).toFixed(0)}, max ${Math.max(...enter).toFixed(0)})`);
console.log(`start() -> exit (stub exits at once): median ${median(total).toFixed(0)} ms`);
const mib = (xs) => `median ${median(xs).toFixed(1)} MiB`;
console.log(`memory of one VM process parked in krun_start_enter (stub): Private ${mib(priv)}, Pss ${mib(pss)}, Rss ${mib(rss)} (Rss counts the node binary's pages shared with every other node process)`);
