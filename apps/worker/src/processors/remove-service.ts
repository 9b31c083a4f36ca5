import type { Job } from 'bullmq';
import type { WorkerContext } from '../worker-context.js';
import { deleteServiceFiles, parse, stopService } from './stop-service.js';

/**
 * `remove`: stop if needed, then delete the service's writable layer, logs and
 * state. On the `deploy` queue (host gone) only the state can be deleted; the
 * files stay on the dead host's disk.
 */
export function createRemoveProcessor(ctx: WorkerContext) {
  return async (job: Job): Promise<{ service: string; action: string }> => {
    const data = parse(job);
    const outcome = await stopService(ctx, data);
    if (outcome === 'stopped' || outcome === 'absent') {
      if (data.host === ctx.hostId || data.host === '') await deleteServiceFiles(ctx, data.service);
      const rec = await ctx.state.get(data.service);
      if (rec && rec.desired === 'stopped') {
        await ctx.state.delete(data.service);
        await ctx.state.emit({ kind: 'transition', service: data.service, deploymentId: data.deploymentId, detail: 'removed' });
      }
    }
    await ctx.promoteGates(data.awaitedBy);
    return { service: data.service, action: outcome === 'superseded' ? 'superseded' : 'removed' };
  };
}
