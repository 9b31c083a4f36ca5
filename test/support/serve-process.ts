import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tempDir, waitFor, type TestEnvWithKernel } from './env.js';

/** The compiled `monocore` CLI. */
export const CLI = join(repoRoot, 'apps', 'cli', 'dist', 'main.js');

export interface ServeProcess {
  /** http://127.0.0.1:<port> the API listens on. */
  url: string;
  /** Its own MONOCORE_HOME (the local credential is in run/api-local.token). */
  home: string;
  /** What it printed on stderr so far (for failure messages). */
  log(): string;
  /** Environment for a client of this serve: its MONOCORE_HOME and URL, no token of the caller's. */
  clientEnv(extra?: Record<string, string>): NodeJS.ProcessEnv;
  /** SIGKILLs serve and its embedded Redis (by pid file, never by name), removes the home. */
  stop(): Promise<void>;
}

/**
 * A real `monocore serve` (API + worker + puller + embedded Redis) as a child
 * process on a free loopback port, with its own MONOCORE_HOME under
 * .monocore-test/tmp, booting real VMs with the test kernel.
 */
export async function startServe(env: TestEnvWithKernel, options: { hostId: string; token?: string; prefix: string }): Promise<ServeProcess> {
  const home = tempDir(options.prefix);
  const serveEnv: NodeJS.ProcessEnv = { ...process.env, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: env.kernelDir };
  if (options.token) serveEnv.MONOCORE_API_TOKEN = options.token;
  else delete serveEnv.MONOCORE_API_TOKEN;
  delete serveEnv.MONOCORE_REDIS_URL; // serve embeds its own Redis
  delete serveEnv.MONOCORE_API_URL;
  const child: ChildProcess = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--host-id', options.hostId], {
    env: serveEnv,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    const pidFile = join(home, 'redis', 'redis.pid');
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      try {
        if (pid > 1) process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(home, { recursive: true, force: true });
  };
  let url: string;
  try {
    url = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode}:\n${stderr}`);
        return /API listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)?.[1];
      },
      { what: 'monocore serve to listen', timeoutMs: 60_000, intervalMs: 100 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    home,
    log: () => stderr,
    clientEnv: (extra = {}) => {
      const e: NodeJS.ProcessEnv = { ...process.env, MONOCORE_HOME: home, MONOCORE_API_URL: url, ...extra };
      if (!('MONOCORE_API_TOKEN' in extra)) delete e.MONOCORE_API_TOKEN;
      return e;
    },
    stop,
  };
}
