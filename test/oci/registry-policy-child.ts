/**
 * Runs inside the network namespace of registry-policy.test.ts (its resolver is the
 * test's DNS server): a real API on loopback, a real puller and Redis, and a
 * redirecting "registry" on 198.18.0.3:5080. Prints one JSON line of results.
 *
 *   node registry-policy-child.js <redisUrl> <workDir>
 */
import { createServer } from 'node:http';
import { join } from 'node:path';
import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { HostRegistry, JobIds, QUEUE_PREFIX, QueueNames, pullImage, MonocoreHome, closeDefaultRegistryClient } from '@monocore/engine';
import { startApi } from '@monocore/api';
import { startWorker } from '@monocore/worker';

const [redisUrl, workDir] = process.argv.slice(2) as [string, string];
const IMAGE_PATH = 'monocore-test/busybox:latest';

// Every request is sent on to meta.test (169.254.169.254: "cloud metadata"), where a real registry answers.
const redirector = createServer((req, res) => {
  res.writeHead(307, { location: `http://meta.test:5000${req.url ?? '/'}` }).end();
});
await new Promise<void>((resolve) => redirector.listen(5080, '198.18.0.3', resolve));

const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
// A real worker host (QEMU, with its puller): the accepted services boot, run `true` and stop.
const worker = await startWorker({ redisUrl, hostId: 'h1', home: join(workDir, 'home'), cpus: 64, ramMib: 8192, logger: pino({ level: 'warn' }) });
const api = await startApi({ redisUrl, host: '127.0.0.1', port: 0 });
const events = new QueueEvents(QueueNames.pull('h1'), { connection: redis.duplicate(), prefix: QUEUE_PREFIX });
await events.waitUntilReady();
// Pull jobs are created by the worker when it expands the deployment's flow, after /up has
// answered: record how each one ends from the start, and wait on that record.
const ended = new Map<string, { ok: boolean; reason?: string }>();
const waiting = new Map<string, () => void>();
const settle = (jobId: string, outcome: { ok: boolean; reason?: string }): void => {
  ended.set(jobId, outcome);
  waiting.get(jobId)?.();
};
events.on('completed', ({ jobId }) => settle(jobId, { ok: true }));
events.on('failed', ({ jobId, failedReason }) => settle(jobId, { ok: false, reason: failedReason }));
async function pullOutcome(jobId: string): Promise<{ ok: boolean; reason?: string }> {
  if (!ended.has(jobId)) {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`pull job ${jobId} did not finish in 120 s`)), 120_000);
      waiting.set(jobId, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  return ended.get(jobId)!;
}

interface UpOutcome {
  image: string;
  status: number;
  code?: string;
  message?: string;
  issues?: Array<{ path: string; message: string }>;
  /** For an accepted up: how its pull ended. */
  pull?: { ok: boolean; reason?: string };
}

let n = 0;
async function up(image: string): Promise<UpOutcome> {
  const name = `svc${n++}`;
  const res = await fetch(`${api.url}/up`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service: [{ name, base: image, command: 'true', restart: 'no', ram: 128 }] }),
  });
  const json = (await res.json()) as { code?: string; message?: string; issues?: UpOutcome['issues']; deploymentId?: string };
  const out: UpOutcome = { image, status: res.status };
  if (json.code) out.code = json.code;
  if (json.message) out.message = json.message;
  if (json.issues) out.issues = json.issues;
  if (res.status === 202 && json.deploymentId) {
    out.pull = await pullOutcome(JobIds.pull(json.deploymentId, name));
  }
  return out;
}

const results: Record<string, unknown> = {};
// (Also recorded: why this worker host runs the backend it does, for the host listing.)
results.backendDetail = (await new HostRegistry(redis).list()).find((h) => h.id === 'h1')?.backendDetail;
results.metadataLiteral = await up(`169.254.169.254:5000/${IMAGE_PATH}`);
results.metadataByName = await up(`meta.test:5000/${IMAGE_PATH}`);
results.privateLiteral = await up(`10.250.0.2:5000/${IMAGE_PATH}`);
results.privateByName = await up(`lan.test:5000/${IMAGE_PATH}`);
results.loopbackByName = await up(`loop.test:5000/${IMAGE_PATH}`);
results.publicByName = await up(`pub.test:5000/${IMAGE_PATH}`);
results.redirect = await up(`redirect.test:5080/${IMAGE_PATH}`);
results.rebind = await up(`rebind.test:5000/${IMAGE_PATH}`);

// Control: the same redirect, pulled without a policy (as the local CLI would), reaches a working registry.
try {
  const pulled = await pullImage(`redirect.test:5080/${IMAGE_PATH}`, { home: new MonocoreHome(join(workDir, 'home-unchecked')) });
  results.redirectUnchecked = { ok: true, digest: pulled.manifestDigest };
} catch (err) {
  results.redirectUnchecked = { ok: false, reason: (err as Error).message };
}

process.stdout.write(`${JSON.stringify(results)}\n`);
await api.close();
await worker.close({ handBack: false });
await events.close();
await closeDefaultRegistryClient();
redirector.close();
redis.disconnect();
process.exit(0);
