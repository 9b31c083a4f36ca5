/**
 * A throwaway supervising process for orphans.test.ts: boots one VM running
 * `sleep 1000`, prints the hypervisor's pid as JSON, and waits to be killed.
 */
import { MonocoreHome, QemuBackend } from '@monocore/engine';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { home: string; kernelDir: string; rootfs: string; stateDir: string };
const backend = new QemuBackend({ home: new MonocoreHome(cfg.home), kernelDir: cfg.kernelDir });
const h = await backend.start({
  id: 'orphan', rootfs: cfg.rootfs, command: '/bin/sleep', args: ['1000'], env: [], cpus: 1, ramMib: 128,
  volumes: [], ports: [], stateDir: cfg.stateDir, network: { mode: 'none' }, bootTimeoutMs: 120_000,
});
await h.started;
process.stdout.write(JSON.stringify({ pid: h.pid }) + '\n');
setInterval(() => {}, 1 << 30);
