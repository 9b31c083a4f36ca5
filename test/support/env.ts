import { performance } from 'node:perf_hooks';
/**
 * Shared test support: the real services the tests talk to, and small helpers.
 *
 * The services are started by `bash scripts/test-services.sh start` (npm test does it),
 * which writes `.monocore-test/env.sh`. `npm test` sources that file; when you run one
 * test file by hand, source it first:
 *
 *   . .monocore-test/env.sh && node --test dist/test/infra/services.test.js
 *
 * As a fallback, testEnv() also reads `.monocore-test/env.sh` itself when the variables
 * are not in the environment, so a bare `node --test …` works once the services are up.
 * A missing service is a loud failure, never a skip.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { holdVmTestLock } from './vm-test-lock.js';

export interface TestEnv {
  /** redis://127.0.0.1:16379 — real redis-server (AOF on, noeviction). */
  redisUrl: string;
  /** host:port of the loopback OCI registry (plain HTTP), e.g. 127.0.0.1:15000. */
  registry: string;
  /** Single-layer busybox-static image: `${registry}/monocore-test/busybox:latest`. */
  image: string;
  /** Two-layer image (adds /etc/motd, whiteouts /etc/removed-in-layer2). */
  imageLayered: string;
  /** Debian bookworm minbase + python3-minimal: `${registry}/monocore-test/python:latest`. */
  imagePython: string;
  /** `<repo>/.monocore-test` — state of the test services; tempDir() lives under it. */
  stateDir: string;
}

export interface TestEnvWithKernel extends TestEnv {
  /** Guest kernel dir from scripts/guest-kernel.sh (`vmlinux`, `lib/modules/<ver>/`). */
  kernelDir: string;
}

const START_HINT = 'run: bash scripts/test-services.sh start';

/** Repository root: works from `test/support/` (tsx) and `dist/test/support/` (compiled). */
export const repoRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'scripts', 'test-services.sh'))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`test/support/env: cannot find the repository root above ${fileURLToPath(import.meta.url)}`);
})();

let envFileLoaded = false;
/** Fills in MONOCORE_TEST_* from .monocore-test/env.sh when they are not set already. */
function loadEnvFile(): void {
  if (envFileLoaded) return;
  envFileLoaded = true;
  const file = join(repoRoot, '.monocore-test', 'env.sh');
  if (!existsSync(file)) return;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^export (MONOCORE_TEST_[A-Z_]+)='([^']*)'$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined && process.env[m[1]] === undefined) {
      process.env[m[1]] = m[2];
    }
  }
}

function required(name: string): string {
  loadEnvFile();
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(`test environment variable ${name} is not set — the shared test services are not running; ${START_HINT}`);
  }
  return value;
}

/** The test services. Throws a loud Error naming the missing variable when any is absent. */
export function testEnv(): TestEnv {
  return {
    redisUrl: required('MONOCORE_TEST_REDIS_URL'),
    registry: required('MONOCORE_TEST_REGISTRY'),
    image: required('MONOCORE_TEST_IMAGE'),
    imageLayered: required('MONOCORE_TEST_IMAGE_LAYERED'),
    imagePython: required('MONOCORE_TEST_IMAGE_PYTHON'),
    stateDir: required('MONOCORE_TEST_STATE_DIR'),
  };
}

/** testEnv() plus the guest kernel dir (throws when MONOCORE_TEST_KERNEL_DIR is absent). */
export function testEnvWithKernel(): TestEnvWithKernel {
  const env = testEnv();
  const kernelDir = required('MONOCORE_TEST_KERNEL_DIR');
  if (!existsSync(join(kernelDir, 'vmlinux'))) {
    throw new Error(`MONOCORE_TEST_KERNEL_DIR=${kernelDir} has no vmlinux; ${START_HINT}`);
  }
  // Every file that boots VMs asks for the kernel: it runs beside other VM tests, never beside the chaos soak.
  holdVmTestLock(env.stateDir, 'shared');
  return { ...env, kernelDir };
}

/**
 * The database each test file uses on the shared test Redis (it flushes it
 * first, so no two files may share one). A new file takes the next free index
 * here; scripts/test-services.sh starts Redis with 64 databases.
 */
export const TEST_REDIS_DBS = {
  'api/metrics': 4,
  'observability/cluster-metrics': 5,
  'orchestration/vm-e2e': 6,
  'api/cli-closed-output': 7,
  'orchestration/host-liveness': 8,
  'orchestration/state-store': 9,
  'orchestration/scheduling': 10,
  'orchestration/multihost': 11,
  'api/api-surface': 12,
  'api/api-streams': 13,
  'orchestration/multihost:queued': 14,
  'orchestration/multihost:restart': 15,
  'orchestration/partition': 16,
  'orchestration/guest-limits:flood': 17,
  'orchestration/guest-limits:capacity': 18,
  'relay/relay': 20,
  'relay/relay:killed': 21,
  'relay/relay:redis': 26,
  'relay/in-process': 27,
  'sandbox/sandbox-e2e': 22,
  'sandbox/sandbox-multihost': 23,
  'sandbox/sandbox-snapshots': 24,
  'sandbox/sandbox-changes': 25,
  'orchestration/stream-tail': 28,
  'orchestration/queue-adopter': 30,
  'orchestration/host-reaper': 31,
} as const;

/** The test Redis URL (redis://127.0.0.1:16379). */
export function redisUrl(): string {
  return required('MONOCORE_TEST_REDIS_URL');
}

/**
 * A fresh directory under `.monocore-test/tmp/` (not /tmp: same filesystem as the
 * services' state, easy to inspect after a failure). The caller removes it:
 *   const dir = tempDir('pull-'); t.after(() => rm(dir, { recursive: true, force: true }));
 */
export function tempDir(prefix: string): string {
  const base = resolve(repoRoot, '.monocore-test', 'tmp');
  mkdirSync(base, { recursive: true });
  return mkdtempSync(join(base, prefix));
}

export interface WaitForOptions {
  /** Give up after this many ms (default 10 000). */
  timeoutMs?: number;
  /** Pause between attempts (default 50 ms). */
  intervalMs?: number;
  /** What is awaited, for the timeout message ("worker to mark the job done"). */
  what: string;
}

/**
 * Polls `predicate` until it returns a truthy value (returned) or the timeout passes
 * (throws `timed out after Nms waiting for <what>`, with the last error if it threw).
 */
export async function waitFor<T>(predicate: () => T | Promise<T>, options: WaitForOptions): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value as NonNullable<T>;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (performance.now() >= deadline) {
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${options.what}${cause}`, { cause: lastError });
    }
    await sleep(intervalMs);
  }
}

/** A short unique suffix for Redis key prefixes / repository names shared between test runs. */
export function uniqueId(): string {
  return `${process.pid.toString(36)}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}
