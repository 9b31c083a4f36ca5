// The API and one worker for REST benchmarks on `redisUrl`, in one of two shapes chosen by
// MONOCORE_BENCH_STACK:
//   split (default)  the worker and the API as their own processes (apps/worker/dist/main.js,
//                    apps/api/dist/main.js), as between hosts: the relay goes through Redis;
//   serve            one `monocore serve` process (apps/cli/dist/main.js serve; API, worker and
//                    puller together, on the same Redis): the relay hands entries over in process
//                    (docs/RELAY.md "In one process").
// Resolves once the API answers with its URL; `worker` and `api` are the processes that run each
// (the same one under serve). The caller kills `children`.
// MONOCORE_BENCH_WORKER_LOG_LEVEL=debug shows the worker's logs (e.g. each sandbox's `sandbox booted`
// line: queued time, boot time and the VM's restore phases).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;

/** The shape MONOCORE_BENCH_STACK asks for: 'split' or 'serve'. */
export function benchStack(env = process.env) {
  const stack = env.MONOCORE_BENCH_STACK || 'split';
  if (stack !== 'split' && stack !== 'serve') throw new Error(`MONOCORE_BENCH_STACK must be serve or split, not "${stack}"`);
  return stack;
}

/** The capacity the benchmark's one worker offers, whichever shape runs it (both read it from the environment). */
const WORKER_CAPACITY = { MONOCORE_WORKER_CPUS: '64', MONOCORE_WORKER_RAM_MIB: '16384' };

export async function startApiAndWorker({ env, redisUrl, home, kernelDir, hostId, nodeArgs = [] }) {
  return benchStack(env) === 'serve' ? startServe({ env, redisUrl, home, kernelDir, hostId, nodeArgs }) : startSplit({ env, redisUrl, home, kernelDir, hostId, nodeArgs });
}

async function startSplit({ env, redisUrl, home, kernelDir, hostId, nodeArgs }) {
  const worker = spawn(process.execPath, [...nodeArgs, join(root, 'apps/worker/dist/main.js')], {
    env: { ...env, MONOCORE_REDIS_URL: redisUrl, MONOCORE_HOST_ID: hostId, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: kernelDir, ...WORKER_CAPACITY, MONOCORE_LOG_LEVEL: process.env.MONOCORE_BENCH_WORKER_LOG_LEVEL ?? 'warn' },
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

async function startServe({ env, redisUrl, home, kernelDir, hostId, nodeArgs }) {
  const serve = spawn(process.execPath, [...nodeArgs, join(root, 'apps/cli/dist/main.js'), 'serve', '--port', '0', '--redis-url', redisUrl, '--host-id', hostId, '--log-level', process.env.MONOCORE_BENCH_WORKER_LOG_LEVEL ?? 'warn'], {
    env: { ...env, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: kernelDir, ...WORKER_CAPACITY },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  // serve writes its URL (with the local CLI's token) to $MONOCORE_HOME/run/api-local.token once the API listens.
  const url = await new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      try {
        resolve(JSON.parse(readFileSync(join(home, 'run', 'api-local.token'), 'utf8')).url);
        clearInterval(timer);
      } catch {
        // not yet
      }
    }, 100);
    serve.once('exit', (code) => {
      clearInterval(timer);
      reject(new Error(`monocore serve exited (${code})`));
    });
  });
  return { worker: serve, api: serve, url, children: [serve] };
}
