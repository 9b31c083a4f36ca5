import { UnrecoverableError, type FlowJob, type Job } from 'bullmq';
import { DeployJobDataSchema, ExpandJobDataSchema, Keys } from '@monocore/engine';
import type { WorkerContext } from '../worker-context.js';
import { createRemoveProcessor } from './remove-service.js';
import { createStopProcessor } from './stop-service.js';

/**
 * The `deploy` queue: request roots (`deployment`, run once every job of the
 * request settled) and stops/removes of services whose host is gone (any
 * worker may settle those).
 */
export function createDeployProcessor(ctx: WorkerContext) {
  const stop = createStopProcessor(ctx);
  const remove = createRemoveProcessor(ctx);
  return async (job: Job): Promise<unknown> => {
    if (job.name === 'expand') {
      const parsed = ExpandJobDataSchema.safeParse(job.data);
      if (!parsed.success) throw new UnrecoverableError(`MC_ORCH_BAD_JOB: expand job ${job.id}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
      // Atomic; a retry after a crash re-adds the same job ids, which BullMQ ignores as duplicates.
      const node = await ctx.flows.add(parsed.data.flow as unknown as FlowJob);
      return { deploymentId: parsed.data.deploymentId, root: node.job.id };
    }
    if (job.name === 'stop') return stop(job);
    if (job.name === 'remove') return remove(job);
    const parsed = DeployJobDataSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`MC_ORCH_BAD_JOB: deployment job ${job.id}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    const data = parsed.data;
    const failures = Object.keys(await job.getIgnoredChildrenFailures()).length;
    await ctx.redis.hset(Keys.deployment(data.deploymentId), {
      finished_at: new Date().toISOString(),
      failed_jobs: failures,
    });
    void ctx.metrics.increment('deploymentsFinished', { kind: data.kind, outcome: failures > 0 ? 'failed' : 'ok' });
    await ctx.state.emit({
      kind: 'deployment',
      deploymentId: data.deploymentId,
      detail: `${data.kind} finished${failures > 0 ? ` (${failures} failed)` : ''}`,
    });
    return { deploymentId: data.deploymentId, failures };
  };
}
