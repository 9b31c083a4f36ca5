import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UnrecoverableError, type Job } from 'bullmq';
import { StopJobDataSchema, type StopJobData } from '@monocore/engine';
import type { WorkerContext } from '../worker-context.js';

/**
 * `stop`: stop a service (its dependents were stopped first: they are this
 * job's children or await gates). Also runs on the `deploy` queue, on any
 * worker, for services whose host is gone — then there is no VM to stop and
 * only the state is settled.
 */
export function createStopProcessor(ctx: WorkerContext) {
  return async (job: Job): Promise<{ service: string; action: string }> => {
    const data = parse(job);
    const action = await stopService(ctx, data);
    await ctx.promoteGates(data.awaitedBy);
    return { service: data.service, action };
  };
}

export function parse(job: Job): StopJobData {
  const parsed = StopJobDataSchema.safeParse(job.data);
  if (!parsed.success) {
    throw new UnrecoverableError(`MC_ORCH_BAD_JOB: ${job.name} job ${job.id}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

export async function stopService(ctx: WorkerContext, data: StopJobData): Promise<'stopped' | 'superseded' | 'absent'> {
  const { state, hostId } = ctx;
  const name = data.service;
  const rec = await state.get(name);
  if (!rec) return 'absent';
  // A later `up` wants it running again: leave it.
  if (rec.desired !== 'stopped') return 'superseded';
  const mine = ctx.supervisor.get(name);
  if (mine) {
    await state.tryTransition(name, { status: 'stopping' }, { host: hostId });
    await ctx.supervisor.stop(name);
    ctx.logger.info({ service: name, deployment: data.deploymentId }, 'service stopped');
  }
  if (rec.status !== 'stopped') {
    await state.tryTransition(name, { status: 'stopped' }, { clear: ['pid'], detail: `deployment ${data.deploymentId}` });
  }
  if (rec.host) {
    await state.releaseLease(name, rec.host, rec.epoch);
    await ctx.hosts.release(rec.host, name);
  }
  return 'stopped';
}

/** Delete a stopped service's writable layer and logs on this host. */
export async function deleteServiceFiles(ctx: WorkerContext, name: string): Promise<void> {
  await rm(ctx.home.serviceDir(name), { recursive: true, force: true });
  for (const stream of ['stdout', 'stderr']) {
    const base = join(ctx.home.logDir, `${name}.${stream}.log`);
    await rm(base, { force: true });
    for (let k = 1; k <= 20; k++) await rm(`${base}.${k}`, { force: true });
  }
}
