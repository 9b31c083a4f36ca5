import { LIVE_STATUSES, type HostReaper, type ServiceRecord } from '@monocore/engine';
import type { WorkerContext } from './worker-context.js';

/**
 * Boot a service again on this host under its current epoch, through the
 * normal start path (a standalone start job: pull, dependencies, lease, boot).
 * Used after a worker restart and after a fence, when the service is still
 * assigned here but its VM is gone.
 */
async function bootAgainHere(ctx: WorkerContext, reaper: HostReaper, rec: ServiceRecord, detail: string): Promise<boolean> {
  const ok = await ctx.state.tryTransition(rec.name, { status: 'pending' }, { host: ctx.hostId, epoch: rec.epoch, detail, clear: ['pid'] });
  if (ok === null) return false;
  await reaper.enqueueStandaloneStart({ ...rec, status: 'pending' }, ctx.hostId, rec.epoch, `r${Date.now().toString(36)}`);
  return true;
}

/**
 * After a restart on the same host: the VMs of the previous process died with
 * it (parent-death signal; cleanupOrphans() kills any survivor), so services
 * still assigned here are booted again under the same lease epoch.
 */
export async function recoverAfterRestart(ctx: WorkerContext, reaper: HostReaper): Promise<void> {
  const recs = await ctx.state.listSummary();
  for (const r of recs) {
    if (r.host !== ctx.hostId || r.desired !== 'running') continue;
    if ((!LIVE_STATUSES.includes(r.status) && r.status !== 'lost') || r.status === 'pulling') continue;
    if (await bootAgainHere(ctx, reaper, r, 'worker restarted: booting again')) {
      ctx.logger.info({ service: r.name }, 'recovering service after worker restart');
    }
  }
}

/**
 * Redis answers again after this host fenced `name` (killed its VM because the
 * lease could not be renewed in time). If the service is still assigned here
 * under the same epoch, nobody else can have booted it (the acquire script
 * requires the assignment): boot it again. If it moved, forget it — the new
 * host runs it. If it was stopped meanwhile, settle it as stopped.
 */
export async function reclaimFenced(ctx: WorkerContext, reaper: HostReaper, name: string, epoch: number): Promise<void> {
  const rec = await ctx.state.get(name);
  if (!rec || rec.host !== ctx.hostId || rec.epoch !== epoch) {
    ctx.logger.info({ service: name, epoch, now: rec ? { host: rec.host, epoch: rec.epoch } : 'removed' }, 'fenced service moved meanwhile: letting it go');
    return;
  }
  if (rec.desired !== 'running') {
    await ctx.state.tryTransition(name, { status: 'stopped' }, { host: ctx.hostId, epoch, detail: 'stopped while fenced', clear: ['pid'] });
    await ctx.state.releaseLease(name, ctx.hostId, epoch);
    await ctx.hosts.release(ctx.hostId, name);
    return;
  }
  if (await bootAgainHere(ctx, reaper, rec, 'its VM was fenced (lease not renewed in time): booting again')) {
    ctx.logger.warn({ service: name }, 'fenced service is still ours: booting it again');
  }
}
