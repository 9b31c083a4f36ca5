import { readdir, rm } from 'node:fs/promises';
import { deleteServiceFiles } from './processors/stop-service.js';
import type { WorkerContext } from './worker-context.js';

/**
 * Deletes this host's files of services that no longer run here. A service's
 * writable disk is host-local: when the service moved to another host (this
 * host was partitioned, fenced, or presumed dead and came back) the new host
 * boots it from a fresh disk, so the old one is garbage; and a service removed
 * while this host could not hear it leaves its disk and logs behind. Runs on
 * the heartbeat's period; each deletion is serialised with the service's own
 * start/stop/remove jobs and re-checks the record first.
 */
export async function removeStrayServiceFiles(ctx: WorkerContext): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(ctx.home.servicesDir);
  } catch {
    return [];
  }
  const candidates = names.filter((n) => ctx.supervisor.get(n) === undefined);
  if (candidates.length === 0) return [];
  const recs = await ctx.state.getBrief(candidates);
  const removed: string[] = [];
  for (const name of candidates) {
    if (recs.get(name)?.host === ctx.hostId) continue;
    await ctx.serial(name, async () => {
      if (ctx.supervisor.get(name) !== undefined) return;
      const rec = await ctx.state.get(name);
      if (rec?.host === ctx.hostId) return;
      if (rec) await rm(ctx.home.serviceDir(name), { recursive: true, force: true }); // moved: its logs stay readable here
      else await deleteServiceFiles(ctx, name); // removed
      removed.push(name);
    });
  }
  if (removed.length > 0) ctx.logger.info({ services: removed }, 'deleted the files of services that no longer run here');
  return removed;
}
