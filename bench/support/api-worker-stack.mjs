// The production shape for REST benchmarks: one worker and the API as their own processes on
// `redisUrl`; resolves once the API prints the URL it listens on. The caller kills `children`.
// MONOCORE_BENCH_WORKER_LOG_LEVEL=debug shows the worker's logs (e.g. each sandbox's `sandbox booted`
// line: queued time, boot time and the VM's restore phases).
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;

export async function startApiAndWorker({ env, redisUrl, home, kernelDir, hostId, nodeArgs = [] }) {
  const worker = spawn(process.execPath, [...nodeArgs, join(root, 'apps/worker/dist/main.js')], {
    env: { ...env, MONOCORE_REDIS_URL: redisUrl, MONOCORE_HOST_ID: hostId, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: kernelDir, MONOCORE_WORKER_CPUS: '64', MONOCORE_WORKER_RAM_MIB: '16384', MONOCORE_LOG_LEVEL: process.env.MONOCORE_BENCH_WORKER_LOG_LEVEL ?? 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const api = spawn(process.execPath, [...nodeArgs, join(root, 'apps/api/dist/main.js')], {
    env: { ...env, MONOCORE_REDIS_URL: redisUrl, MONOCORE_API_PORT: '0', MONOCORE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    api.stdout.on('data', (d) => {
      buf += d.toString();
      const m = /"url":"(http:[^"]+)"/.exec(buf);
      if (m) resolve(m[1]);
    });
    api.once('exit', () => reject(new Error(`the API exited: ${buf}`)));
  });
  return { worker, api, url, children: [worker, api] };
}
