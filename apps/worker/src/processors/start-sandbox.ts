import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import {
  MonocoreError,
  SandboxStartJobDataSchema,
  isEndedSandboxStatus,
  isMonocoreError,
  sandboxSubject,
  type ImageRuntime,
  type PullJobResult,
  type SandboxRecord,
} from '@monocore/engine';
import { jobIdOfKey, type WorkerContext } from '../worker-context.js';

/** What a completed sandbox-start job returns. */
export interface SandboxStartResult {
  sandbox: string;
  action: 'started' | 'ended' | 'moved' | 'failed' | 'fenced';
  pid?: number;
}

/** `MC_OCI_MANIFEST_NOT_FOUND: manifest …` (a failed pull's reason) → its code and message. */
export function splitCodedReason(reason: string): { code?: string; message: string } {
  const m = /^(MC_[A-Z0-9_]+): ([\s\S]*)$/.exec(reason);
  return m ? { code: m[1]!, message: m[2]! } : { message: reason };
}

/**
 * `sandbox-start`: boot a sandbox placed on this host, after its pull child
 * (the image on this host). Idempotent: a sandbox that ended meanwhile
 * (deleted, expired) or belongs elsewhere is left alone. A failed pull fails
 * the sandbox with the registry's reason and code; a boot that fails its
 * last attempt fails it too. Never a second VM: the lease is taken right
 * before the boot, as for services.
 */
export function createSandboxStartProcessor(ctx: WorkerContext) {
  return async (job: Job, token?: string): Promise<SandboxStartResult> => {
    const parsed = SandboxStartJobDataSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`MC_ORCH_BAD_JOB: sandbox-start job ${job.id}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    const { sandbox: id, epoch } = parsed.data;
    const { hostId, sandboxStore: store } = ctx;
    const [rec, failures] = await Promise.all([store.get(id), job.getIgnoredChildrenFailures()]);
    if (!rec || isEndedSandboxStatus(rec.status)) return { sandbox: id, action: 'ended' };
    if (rec.host !== hostId || rec.epoch !== epoch) return { sandbox: id, action: 'moved' };
    if (rec.status === 'running' && ctx.sandboxes.ids().includes(id)) return { sandbox: id, action: 'started' };

    const pullFailure = Object.values(failures)[0];
    if (pullFailure !== undefined) {
      const { code, message } = splitCodedReason(pullFailure);
      await ctx.sandboxes.end(id, 'failed', `pull of ${rec.image} failed: ${message}`, code);
      return { sandbox: id, action: 'failed' };
    }

    const lease = await ctx.liveness.acquire(sandboxSubject(id), epoch);
    if (lease === 'stale') return { sandbox: id, action: 'moved' };
    if (lease !== 'held') {
      await job.moveToDelayed(Date.now() + Math.max(50, Math.min(lease.pttlMs + 50, ctx.timing.leaseMs)), token);
      throw new DelayedError();
    }
    try {
      const tBoot = performance.now();
      const image = await imageFor(ctx, job, rec);
      const { pid, boot, timings } = await ctx.sandboxes.boot(rec, image);
      // Where a create's time went (docs/SNAPSHOTS.md "Where the time goes"): queued → this job, then the boot.
      ctx.logger.debug({ sandbox: id, boot: boot.from, why: boot.reason, queuedMs: (job.processedOn ?? Date.now()) - job.timestamp, bootMs: Math.round(performance.now() - tBoot), vm: timings }, 'sandbox booted');
      await store.transition(id, hostId, 'running', {
        host: hostId,
        epoch,
        detail: `running on ${hostId}`,
        fields: { pid, started_at: Date.now(), last_activity: Date.now(), worker: ctx.worker, image_digest: image.digest ?? '', boot_from: boot.from, boot_reason: boot.reason },
      });
      return { sandbox: id, action: 'started', pid };
    } catch (err) {
      if (isMonocoreError(err, 'MC_ORCH_LEASE_EXPIRED')) return { sandbox: id, action: 'fenced' };
      if (isMonocoreError(err, 'MC_SANDBOX_NOT_RUNNING')) return { sandbox: id, action: 'ended' }; // deleted or expired while booting
      if (isMonocoreError(err, 'MC_STATE_FENCED') || isMonocoreError(err, 'MC_STATE_INVALID_TRANSITION')) {
        // It ended (or moved) while it booted: nothing of it may stay here.
        await ctx.sandboxes.end(id, 'deleted', 'ended while it booted');
        return { sandbox: id, action: 'ended' };
      }
      const message = err instanceof Error ? err.message : String(err);
      const retryable = isMonocoreError(err) ? err.retryable : true;
      const final = !retryable || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (final) {
        await ctx.sandboxes.end(id, 'failed', `could not boot: ${message.slice(0, 500)}`, isMonocoreError(err) ? err.code : 'MC_ORCH_BOOT_FAILED');
        throw new UnrecoverableError(message);
      }
      // No VM runs now; the retry takes the lease again right before it boots.
      await ctx.liveness.release(sandboxSubject(id), epoch);
      throw err;
    }
  };
}

async function imageFor(ctx: WorkerContext, job: Job, rec: SandboxRecord): Promise<ImageRuntime & { digest?: string }> {
  const values = (await job.getChildrenValues()) as Record<string, PullJobResult>;
  const pulled = Object.entries(values).find(([key]) => jobIdOfKey(key).endsWith('.pull'))?.[1];
  const [record] = await ctx.images.get(pulled?.manifestDigest || rec.image);
  if (!record) {
    throw new MonocoreError('MC_OCI_IMAGE_NOT_FOUND', `image ${rec.image} is not present on host ${ctx.hostId}`, { image: rec.image, host: ctx.hostId });
  }
  return { rootfs: pulled?.rootfs || record.rootfs, config: record.config, digest: record.manifestDigest };
}
