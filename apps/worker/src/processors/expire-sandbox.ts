import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { SandboxExpireJobDataSchema, isEndedSandboxStatus } from '@monocore/engine';
import type { WorkerContext } from '../worker-context.js';

/**
 * `sandbox-expire` (delayed): the sandbox's maximum life (`timeout`, counted
 * from creation) or its idle time (`idle`) is up. An idle job that finds
 * activity since it was scheduled — a call in flight, or one that ended less
 * than idle_timeout_s ago — delays itself to the new deadline (no attempt
 * spent), so calls never have to touch the job. With on_idle "pause" the idle
 * job pauses the sandbox instead and stays, looking again every idle_timeout_s.
 */
export function createSandboxExpireProcessor(ctx: WorkerContext) {
  return async (job: Job, token?: string): Promise<{ sandbox: string; action: 'expired' | 'paused' | 'ended' | 'elsewhere' }> => {
    const parsed = SandboxExpireJobDataSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`MC_ORCH_BAD_JOB: sandbox-expire job ${job.id}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    const { sandbox: id, why } = parsed.data;
    const rec = await ctx.sandboxStore.get(id);
    if (!rec || isEndedSandboxStatus(rec.status)) return { sandbox: id, action: 'ended' };
    // A job of a dead host's queue, adopted here: that host's reaper marks its sandboxes lost.
    if (rec.host !== ctx.hostId) return { sandbox: id, action: 'elsewhere' };
    if (why === 'idle') {
      const idleMs = (rec.idleTimeoutS ?? 0) * 1000;
      // Paused (by on_idle "pause" or by hand): nothing runs; look again after a while, since a
      // resume makes it count from its next activity.
      if (rec.status === 'paused') {
        await job.moveToDelayed(Date.now() + idleMs, token);
        throw new DelayedError();
      }
      // Idle time counts from the last call, or from when it started running (never while it is created).
      const busy = rec.status === 'creating' || ctx.relay.activeCalls({ kind: 'sandbox', id }) > 0;
      const due = Math.max(rec.lastActivityAt, rec.startedAt ?? 0) + idleMs;
      if (busy || due > Date.now()) {
        await job.moveToDelayed(busy ? Date.now() + idleMs : due, token);
        throw new DelayedError();
      }
      if (rec.onIdle === 'pause') {
        await ctx.sandboxes.pause(id, `idle for ${rec.idleTimeoutS} s (idle_timeout_s, on_idle pause)`);
        await job.moveToDelayed(Date.now() + idleMs, token);
        throw new DelayedError();
      }
      await ctx.sandboxes.end(id, 'expired', `idle for ${rec.idleTimeoutS} s (idle_timeout_s)`);
    } else {
      await ctx.sandboxes.end(id, 'expired', `its maximum life of ${rec.timeoutS} s passed (timeout_s)`);
    }
    return { sandbox: id, action: 'expired' };
  };
}
