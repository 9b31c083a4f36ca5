// The CLI whose reader goes away (`monocore --help | head -1`, `monocore status --json | head -c 100`):
// it must end quietly, with no stack trace and its usual exit status. Each case gives the CLI a
// real pipe (a FIFO) whose reading end is closed early, either before the CLI writes anything or
// after the first chunk, by the test; `status` talks to a real API (real Redis) holding 1,000
// services, so its JSON (~270 KB) cannot fit in what the reader took plus the pipe's buffer
// (64 KiB each): the CLI is certain to write into the closed pipe.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { HostRegistry } from '@monocore/engine';
import { startApi, type RunningApi } from '@monocore/api';
import { TEST_REDIS_DBS, repoRoot, tempDir } from '../support/env.js';
import { apiTestRedisUrl, flushDb, TOKEN } from './api-test-env.js';

const CLI = join(repoRoot, 'apps', 'cli', 'dist', 'main.js');
const REDIS_URL = apiTestRedisUrl(TEST_REDIS_DBS['api/cli-closed-output']);
const SERVICES = 1000;
let api: RunningApi;
let dir: string;

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** What the reader took before it closed the pipe. */
  read: string;
}

/**
 * Runs the CLI with its stdout on a FIFO. With `readFirst` false the reading end is closed
 * before the CLI starts; with true the reader takes the first chunk, then closes.
 */
async function cliIntoClosedPipe(args: string[], readFirst: boolean): Promise<Ended> {
  const fifo = join(dir, `out-${Math.random().toString(36).slice(2)}`);
  execFileSync('mkfifo', [fifo]);
  // Open the reading end first (non-blocking, or the open waits for a writer), then the writing end.
  const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const writeFd = openSync(fifo, constants.O_WRONLY);
  rmSync(fifo);
  const reader = new Socket({ fd: readFd, readable: true, writable: false });
  let read = '';
  const readerClosed = new Promise<void>((resolve) => reader.once('close', () => resolve()));
  if (readFirst) {
    reader.once('data', (d: Buffer) => {
      read = d.toString();
      reader.destroy();
    });
  } else {
    reader.destroy();
    await readerClosed;
  }
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, MONOCORE_API_URL: api.url, MONOCORE_API_TOKEN: TOKEN },
    stdio: ['ignore', writeFd, 'pipe'],
  });
  closeSync(writeFd); // the child holds the only writing end now
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once('close', (c, s) => resolve([c, s])),
  );
  await readerClosed;
  return { code, signal, stderr, read };
}

before(async () => {
  await flushDb(REDIS_URL);
  dir = tempDir('closed-output-');
  api = await startApi({ redisUrl: REDIS_URL, host: '127.0.0.1', port: 0, token: TOKEN });
  // A host with room for every service and no worker: the services stay `pending` with their full record.
  const { Redis } = await import('ioredis');
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    await new HostRegistry(redis).register({ id: 'closed-output-host', cpus: 4096, ramMib: 1 << 22, backends: ['qemu'] }, 600_000);
  } finally {
    redis.disconnect();
  }
  const service = Array.from({ length: SERVICES }, (_, i) => ({
    name: `svc-${i}`,
    base: '127.0.0.1:5000/none/busybox:latest',
    command: '/bin/true',
    ram: 64,
  }));
  const res = await fetch(`${api.url}/up`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ service }),
  });
  assert.equal(res.status, 202, await res.text());
});

after(async () => {
  await api?.close();
  await flushDb(REDIS_URL).catch(() => undefined);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('`monocore --help` into a pipe already closed: exit 0, nothing on stderr', async () => {
  const r = await cliIntoClosedPipe(['--help'], false);
  assert.deepEqual([r.code, r.signal, r.stderr], [0, null, '']);
});

test('`monocore status --help` into a pipe already closed: exit 0, nothing on stderr', async () => {
  const r = await cliIntoClosedPipe(['status', '--help'], false);
  assert.deepEqual([r.code, r.signal, r.stderr], [0, null, '']);
});

test('`monocore status --json` whose reader stops after the first chunk: exit 0, nothing on stderr', async () => {
  const r = await cliIntoClosedPipe(['status', '--json'], true);
  assert.ok(r.read.startsWith('{"services":[{"name":"svc-0"'), r.read.slice(0, 200));
  assert.deepEqual([r.code, r.signal, r.stderr], [0, null, '']);
});

test('`monocore status --watch --json` ends by itself when its reader goes away: exit 0', async () => {
  const r = await cliIntoClosedPipe(['status', '--watch', '--json', '--interval', '0.2'], true);
  assert.ok(r.read.startsWith('{"time":'), r.read.slice(0, 200));
  assert.deepEqual([r.code, r.signal, r.stderr], [0, null, '']);
});

test('a usage error into a closed pipe keeps its own exit status (2) and its message on stderr', async () => {
  const r = await cliIntoClosedPipe(['status', '--no-such-flag'], false);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /unknown option '--no-such-flag'/);
});

test('the shell pipeline a user types: `monocore --help | head -1` prints one line, exit 0, no stack trace', () => {
  // pipefail: the exit status is the CLI's own, not head's. Whether the CLI writes before head
  // is gone is up to the scheduler: both ways must end the same.
  const err = join(dir, 'help-stderr');
  const out = execFileSync(
    'bash',
    ['-c', `set -o pipefail; "${process.execPath}" "${CLI}" --help 2>"${err}" | head -1; echo "exit=$?"; cat "${err}"`],
    { encoding: 'utf8' },
  );
  assert.equal(out, 'Usage: monocore [options] [command]\nexit=0\n');
});
