import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';

/**
 * Runs a start-up step that needs Redis until it succeeds. A worker started while Redis is
 * down or restarting (a host reboot, compose starting both at once, Redis killed while the
 * worker's supervisor restarts it) waits for Redis instead of exiting: an exited worker never
 * cleans its host (stray service files, orphaned VMs) and needs an outside restart policy.
 * Retries every 0.2 s rising to 2 s; says so at warn once, then every 30 s.
 */
export async function awaitRedis<T>(what: string, step: () => Promise<T>, logger: Logger): Promise<T> {
  let waitMs = 200;
  let firstFailure: number | undefined;
  let lastWarn = 0;
  for (;;) {
    try {
      const r = await step();
      if (firstFailure !== undefined) logger.info({ step: what, waitedMs: Math.round(performance.now() - firstFailure) }, 'Redis answers again: start-up goes on');
      return r;
    } catch (err) {
      const now = performance.now();
      firstFailure ??= now;
      if (now - lastWarn >= 30_000) {
        lastWarn = now;
        logger.warn({ step: what, err: (err as Error).message }, 'waiting for Redis to start up');
      }
      await sleep(waitMs);
      waitMs = Math.min(2000, waitMs * 2);
    }
  }
}
