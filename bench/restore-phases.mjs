// Where a sandbox restore's time goes, straight on the engine's QemuBackend (no API, no worker):
//   node bench/restore-phases.mjs [N=6] [SPARES=0] [PAUSE_MS=1500]
// Starts N 256 MiB sandboxes of the test image one after another in a fresh MONOCORE_HOME (the
// first boots cold and saves the template), each until its agent answers, runs `true`, ends it,
// and waits PAUSE_MS (memory freed just before is faster to touch again: docs/PLATFORM.md). Per
// start: where it came from, spawn → agent ready, the restore's phases (ms after QEMU's spawn),
// and QEMU's RSS. SPARES=1 lets the backend keep a spare (docs/SNAPSHOTS.md "Spares").
// Env: MONOCORE_TEST_IMAGE, MONOCORE_KERNEL_DIR (or MONOCORE_TEST_KERNEL_DIR).
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const { MonocoreHome, QemuBackend, pullImage, closeDefaultRegistryClient } = await import('../libs/engine/dist/index.js');
const N = Number(process.argv[2] ?? 6);
const SPARES = Number(process.argv[3] ?? 0);
const PAUSE_MS = Number(process.argv[4] ?? 1500);
const env = process.env;
const root = mkdtempSync(join(tmpdir(), 'mc-bench-restore-'));
const home = new MonocoreHome(join(root, 'home'));
mkdirSync(home.root, { recursive: true });
const image = await pullImage(env.MONOCORE_TEST_IMAGE, { home });
await closeDefaultRegistryClient();
const qemu = new QemuBackend({ home, spares: SPARES, kernelDir: env.MONOCORE_KERNEL_DIR ?? env.MONOCORE_TEST_KERNEL_DIR });
try {
  for (let i = 0; i < N; i++) {
    const t0 = Date.now();
    const vm = await qemu.start({
      id: `vm${i}`, rootfs: image.rootfs, command: '', args: [], env: [], cpus: 1, ramMib: 256, volumes: [], ports: [],
      stateDir: join(root, `vm${i}`), network: { mode: 'none' }, sandbox: true,
    });
    const agent = await vm.agent();
    const readyMs = Date.now() - t0;
    await agent.exec({ argv: ['true'] });
    const rssMib = Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${vm.pid}/status`, 'utf8'))?.[1]) / 1024);
    const spare = /restored ahead/.test(vm.boot.reason);
    process.stdout.write(`${JSON.stringify({ i, from: spare ? `${vm.boot.from}+spare` : vm.boot.from, start_to_agent_ready_ms: readyMs, first_exec_done_ms: Date.now() - t0, qemu_rss_mib: rssMib, phases_ms: vm.timings, thp: readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').trim() })}\n`);
    await vm.kill();
    await new Promise((r) => setTimeout(r, PAUSE_MS));
  }
} finally {
  await qemu.close();
  rmSync(root, { recursive: true, force: true });
}
