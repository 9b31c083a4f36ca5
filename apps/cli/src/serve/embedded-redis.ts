import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { MonocoreError } from '@monocore/engine/errors';
import type { MonocoreHome } from '@monocore/engine/home';

export interface EmbeddedRedis {
  /** redis://:<password>@127.0.0.1:<port>/0 */
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/**
 * The Redis `monocore serve` runs when no MONOCORE_REDIS_URL is given: a child
 * `redis-server` with AOF on (nothing acknowledged is lost on a crash), data
 * under MONOCORE_HOME/redis, bound to 127.0.0.1 on a free private port and
 * protected by a random password (other local users cannot reach the state),
 * stopped with serve. The password is in a 0600 config file, not on argv.
 */
export async function startEmbeddedRedis(home: MonocoreHome, logger: Logger): Promise<EmbeddedRedis> {
  const dir = home.embeddedRedisDir;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await stopStaleRedis(dir, logger);
  const port = await freePort();
  const password = randomBytes(24).toString('hex');
  const confPath = join(dir, 'redis.conf');
  const conf = [
    'bind 127.0.0.1',
    `port ${port}`,
    'protected-mode yes',
    `requirepass ${password}`,
    `dir "${dir}"`,
    'appendonly yes',
    'appendfsync everysec',
    'save ""',
    'daemonize no',
    `pidfile "${join(dir, 'redis.pid')}"`,
    `logfile "${join(dir, 'redis.log')}"`,
    // BullMQ must never lose keys to eviction.
    'maxmemory-policy noeviction',
    '',
  ].join('\n');
  await writeFile(`${confPath}.tmp`, conf, { mode: 0o600 });
  await rename(`${confPath}.tmp`, confPath);

  const child: ChildProcess = spawn('redis-server', [confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  const url = `redis://:${password}@127.0.0.1:${port}/0`;
  const ready = waitForPing(url, 15_000);
  const first = await Promise.race([
    ready.then(() => 'ready' as const),
    exited.then(() => 'exited' as const),
    spawnError.then((e) => e),
  ]);
  if (first !== 'ready') {
    child.kill('SIGKILL');
    const log = await readFile(join(dir, 'redis.log'), 'utf8').catch(() => '');
    const why =
      first instanceof Error && (first as NodeJS.ErrnoException).code === 'ENOENT'
        ? 'redis-server is not installed (apt-get install redis-server), or set MONOCORE_REDIS_URL to an existing Redis'
        : `redis-server exited at start: ${(stderr || log).trim().split('\n').slice(-5).join(' | ')}`;
    throw new MonocoreError('MC_API_REDIS_UNAVAILABLE', `cannot start the embedded Redis: ${why}`, { dir });
  }
  logger.info({ port, dir, redisPid: child.pid }, 'embedded Redis ready (AOF on)');

  let stopping: Promise<void> | undefined;
  return {
    url,
    port,
    pid: child.pid ?? -1,
    stop: () =>
      (stopping ??= (async () => {
        if (child.exitCode !== null) return;
        child.kill('SIGTERM'); // redis-server flushes the AOF and exits on SIGTERM
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
        logger.info('embedded Redis stopped');
      })()),
  };
}

async function waitForPing(url: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      return;
    } catch (err) {
      r.disconnect();
      if (performance.now() > deadline) throw err;
      await new Promise((res) => setTimeout(res, 50));
    }
  }
}

/** A previous serve killed with SIGKILL leaves its redis-server behind: stop it so the AOF has one writer. */
async function stopStaleRedis(dir: string, logger: Logger): Promise<void> {
  const pidText = await readFile(join(dir, 'redis.pid'), 'utf8').catch(() => '');
  const pid = Number(pidText.trim());
  if (!Number.isInteger(pid) || pid <= 1) return;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes('redis-server') || !cmdline.includes(join(dir, 'redis.conf'))) return;
  logger.warn({ redisPid: pid }, 'stopping a stale embedded redis-server left by a previous serve');
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  process.kill(pid, 'SIGKILL');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
