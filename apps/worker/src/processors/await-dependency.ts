import { DelayedError, Job, UnrecoverableError } from 'bullmq';
import {
  GateJobDataSchema,
  JobIds,
  LIVE_STATUSES,
  QueueNames,
  formatState,
  type ServiceRecord,
  type ServiceState,
} from '@monocore/engine';
import type { WorkerContext } from '../worker-context.js';

/**
 * `await` gate: the child a service's job gets for a dependency whose real
 * job already belongs to another parent (a BullMQ job has one parent). It
 * completes once the target reached its goal in this request (started, or
 * stopped for down), fails for good when it never can, and otherwise sleeps
 * (moveToDelayed, no attempt spent) until the target's job promotes it or the
 * safety poll fires.
 */
export function createAwaitProcessor(ctx: WorkerContext) {
  return async (job: Job, token?: string): Promise<{ target: string; state: string }> => {
    const parsed = GateJobDataSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`MC_ORCH_BAD_JOB: await job ${job.id}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    const data = parsed.data;
    const rec = await ctx.state.get(data.target);
    if (data.condition === 'stopped') {
      if (!rec || !LIVE_STATUSES.includes(rec.status) || rec.desired === 'running') return { target: data.target, state: rec?.status ?? 'removed' };
    } else {
      const verdict = await startedVerdict(ctx, data.deploymentId, data.target, rec);
      if (verdict === 'ok') return { target: data.target, state: 'running' };
      if (verdict !== 'wait') throw new UnrecoverableError(verdict);
    }
    await job.moveToDelayed(Date.now() + ctx.tuning.gatePollMs, token);
    // Close the check-then-sleep race: the target may have become ready (and tried
    // to promote us while we were still active) between our check and the move.
    // Its state changes before it promotes, so one re-check after the move suffices.
    if (await ready(ctx, data)) await job.promote().catch(() => undefined);
    throw new DelayedError();
  };
}

async function ready(ctx: WorkerContext, data: { deploymentId: string; target: string; condition: 'started' | 'stopped' }): Promise<boolean> {
  const rec = await ctx.state.get(data.target);
  if (data.condition === 'stopped') return !rec || !LIVE_STATUSES.includes(rec.status) || rec.desired === 'running';
  return (await startedVerdict(ctx, data.deploymentId, data.target, rec)) !== 'wait';
}

async function startedVerdict(ctx: WorkerContext, deploymentId: string, target: string, rec: ServiceRecord | null): Promise<'ok' | 'wait' | string> {
  if (!rec) return `dependency "${target}" was removed`;
  if (rec.deploymentId !== deploymentId) return rec.status === 'running' ? 'ok' : 'wait';
  if (rec.status === 'running' && rec.runningHash === rec.configHash) return 'ok';
  if (rec.status === 'failed' || rec.status === 'blocked') return `dependency "${target}" is ${formatState(asState(rec))}`;
  if (rec.desired === 'stopped') return `dependency "${target}" was stopped`;
  // The target's start job finished: it did reach running in this request (it may have exited since).
  if (rec.host) {
    const j = await Job.fromId(ctx.queue(QueueNames.host(rec.host)), JobIds.start(deploymentId, target));
    const s = j ? await j.getState() : undefined;
    if (s === 'completed') return 'ok';
    if (s === 'failed') return `dependency "${target}" failed: ${j?.failedReason ?? ''}`;
  }
  return 'wait';
}

function asState(r: ServiceRecord): ServiceState {
  if (r.status === 'failed') return { status: 'failed', reason: r.reason ?? '' };
  if (r.status === 'blocked') return { status: 'blocked', by: r.blockedBy ?? '' };
  if (r.status === 'exited') return { status: 'exited', exitCode: r.exitCode ?? null };
  return { status: r.status } as ServiceState;
}
