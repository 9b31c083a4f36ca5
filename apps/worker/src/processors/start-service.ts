import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import {
  MonocoreError,
  StartJobDataSchema,
  groupNetwork,
  isMonocoreError,
  pullImage,
  type ImageRuntime,
  type RegistryPolicyData,
  type PullJobResult,
  type ResolvedService,
  type ServiceRecord,
  type StartJobResult,
  type VmNetwork,
} from '@monocore/engine';
import { jobIdOfKey, parseChildId, type WorkerContext } from '../worker-context.js';

/**
 * `start`: make a service run its desired config on this host. Runs after its
 * flow children completed: the pull of its image on this host, and the start
 * jobs (or await gates) of everything it depends on. Idempotent (BullMQ is
 * at-least-once): a superseded, moved or unchanged service is left alone.
 */
export function createStartProcessor(ctx: WorkerContext) {
  return async (job: Job, token?: string): Promise<StartJobResult> => {
    const parsed = StartJobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      throw new UnrecoverableError(`MC_ORCH_BAD_JOB: start job ${job.id}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    }
    const data = parsed.data;
    const { state, hostId } = ctx;
    const name = data.service;
    // Independent reads go out together (one round trip).
    const [rec, failures] = await Promise.all([state.get(name), job.getIgnoredChildrenFailures()]);
    if (!rec || rec.desired !== 'running' || rec.deploymentId !== data.deploymentId) {
      return { service: name, action: 'superseded' };
    }
    if (rec.host !== hostId || rec.epoch !== data.epoch) return { service: name, action: 'moved' };
    const fence = { host: hostId, epoch: data.epoch };
    const settle = () => ctx.promoteGates(data.awaitedBy);

    // Children that failed for good (ignoreDependencyOnFailure keeps the flow going so we can say why).
    for (const [key, reason] of Object.entries(failures)) {
      const child = parseChildId(jobIdOfKey(key));
      if (child.kind === 'pull') {
        await state.tryTransition(name, { status: 'failed', reason: `pull failed: ${reason}` }, { ...fence, fields: { last_error: reason } });
        await settle();
        throw new UnrecoverableError(`service "${name}": pull failed: ${reason}`);
      }
    }
    for (const [key, reason] of Object.entries(failures)) {
      const child = parseChildId(jobIdOfKey(key));
      const dep = child.service;
      await state.tryTransition(name, { status: 'blocked', by: dep }, { ...fence, fields: { last_error: `dependency ${dep}: ${reason}` } });
      await settle();
      throw new UnrecoverableError(`MC_ORCH_DEPENDENCY_FAILED: service "${name}" is blocked by "${dep}": ${reason}`);
    }

    // The flow already ordered us after our dependencies; the state check makes that
    // safe even when a dependency moved hosts meanwhile (its job on a lost host
    // completes as `moved`) and gates standalone starts (pollDependencies).
    const local = ctx.supervisor.get(name);
    if (local?.running && local.epoch === data.epoch && local.configHash === rec.configHash && rec.status === 'running') {
      await settle();
      return { service: name, action: 'unchanged', ...(local.pid !== undefined ? { pid: local.pid } : {}) };
    }
    if (rec.dependsOn.length > 0) {
      const deps = await state.getBrief(rec.dependsOn);
      for (const d of rec.dependsOn) {
        const r = deps.get(d);
        if (!r || r.desired === 'stopped' || r.status === 'failed' || r.status === 'blocked') {
          const why = !r ? 'removed' : r.desired === 'stopped' ? 'stopped' : r.status;
          await state.tryTransition(name, { status: 'blocked', by: d }, { ...fence, fields: { last_error: `dependency ${d} is ${why}` } });
          await settle();
          throw new UnrecoverableError(`MC_ORCH_DEPENDENCY_FAILED: service "${name}" is blocked by "${d}" (${why})`);
        }
      }
      if (rec.dependsOn.some((d) => !['running', 'exited'].includes(deps.get(d)?.status ?? ''))) {
        await job.moveToDelayed(Date.now() + Math.min(ctx.tuning.gatePollMs, 1000), token);
        throw new DelayedError();
      }
    }

    // Take only what fits: placement accounts for this, but the host checks what it really runs.
    {
      const used = ctx.usage();
      const replaced = ctx.supervisor.usageOf(name);
      const needCpus = rec.cpus;
      const needRam = rec.ramMib;
      if (used.cpus - replaced.cpus + needCpus > ctx.capacity.cpus || used.ramMib - replaced.ramMib + needRam > ctx.capacity.ramMib) {
        ctx.logger.warn({ service: name, used, capacity: ctx.capacity }, 'service does not fit on this host right now; retrying later');
        // Never silently: the service says what it waits for (once; the job retries every 2 s).
        const why =
          `waits for capacity on host "${hostId}": needs ${needCpus} cpus/${needRam} MiB, ` +
          `${ctx.capacity.cpus - used.cpus + replaced.cpus} cpus/${ctx.capacity.ramMib - used.ramMib + replaced.ramMib} MiB free of ${ctx.capacity.cpus} cpus/${ctx.capacity.ramMib} MiB`;
        if (rec.lastError !== why) await state.tryTransition(name, { status: 'pending' }, { ...fence, fields: { last_error: why } });
        await job.moveToDelayed(Date.now() + 2000, token);
        throw new DelayedError();
      }
    }

    if (local) await ctx.supervisor.stop(name); // changed config: replace the running VM

    // Fencing: only the lease holder may boot, and a new holder only once the previous lease expired.
    // Taken right before booting: from now on HostLiveness renews it or kills the VM.
    const lease = await ctx.liveness.acquire(name, data.epoch);
    if (lease === 'stale') return { service: name, action: 'moved' };
    if (lease !== 'held') {
      ctx.logger.info({ service: name, holder: lease.holder, pttlMs: lease.pttlMs }, 'waiting for the previous lease to expire');
      await job.moveToDelayed(Date.now() + Math.max(50, Math.min(lease.pttlMs + 50, ctx.timing.leaseMs)), token);
      throw new DelayedError();
    }

    try {
      const resolved = JSON.parse(rec.config ?? '{}') as ResolvedService;
      const image = await imageFor(ctx, job, rec, resolved, data.registryPolicy);
      const network = await networkFor(ctx, rec, resolved);
      await state.transition(name, { status: 'starting' }, { ...fence, fields: { attempts: job.attemptsMade + 1 }, clear: ['pid'] });
      const handle = await ctx.supervisor.boot(name, {
        resolved,
        ...(image ? { image } : {}),
        network,
        epoch: data.epoch,
        configHash: rec.configHash ?? '',
        deploymentId: data.deploymentId,
      });
      await state.transition(name, { status: 'running' }, {
        ...fence,
        fields: { pid: handle.pid, started_at: new Date().toISOString(), running_hash: rec.configHash ?? '' },
        clear: ['exit_code', 'last_error'],
      });
      // Info: what `monocore daemon logs` shows a person following the local daemon.
      ctx.logger.info({ service: name, pid: handle.pid, deployment: data.deploymentId }, 'service running');
      // Not awaited: completing this job (which releases the owning parent) need not wait for the
      // gate promotions; a gate that misses one re-checks by itself.
      void settle();
      return { service: name, action: 'started', pid: handle.pid };
    } catch (err) {
      // Fenced, or marked lost while it booted (this host's heartbeat lapsed, e.g. Redis was down,
      // and a reaper rescheduled it): the copy here must not run, and the service is not failed.
      const reaped = isMonocoreError(err, 'MC_STATE_INVALID_TRANSITION') && err.details.from === 'lost';
      if (isMonocoreError(err, 'MC_STATE_FENCED') || reaped) {
        await ctx.supervisor.kill(name);
        return { service: name, action: 'moved' };
      }
      if (isMonocoreError(err, 'MC_ORCH_LEASE_EXPIRED')) return { service: name, action: 'fenced' };
      const message = err instanceof Error ? err.message : String(err);
      const retryable = isMonocoreError(err) ? err.retryable : true;
      const final = !retryable || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (final) {
        await state.tryTransition(name, { status: 'failed', reason: message.slice(0, 500) }, {
          ...fence,
          fields: { last_error: message, log_tail: ctx.supervisor.tail(name) },
        });
        await ctx.supervisor.kill(name);
        await ctx.liveness.release(name, data.epoch);
        await settle();
        throw new UnrecoverableError(message);
      }
      // No VM runs now; the retry takes the lease again right before it boots.
      await ctx.liveness.release(name, data.epoch);
      await state.tryTransition(name, { status: 'pending' }, { ...fence, fields: { last_error: message } });
      throw err;
    }
  };
}

async function imageFor(
  ctx: WorkerContext,
  job: Job,
  rec: ServiceRecord,
  resolved: ResolvedService,
  policy: RegistryPolicyData | undefined,
): Promise<ImageRuntime | undefined> {
  if (!resolved.image) {
    throw new MonocoreError('MC_ORCH_NO_IMAGE', `service "${rec.name}" has no base image`, { service: rec.name });
  }
  const values = (await job.getChildrenValues()) as Record<string, PullJobResult>;
  let pulled: PullJobResult | undefined;
  for (const [key, v] of Object.entries(values)) if (parseChildId(jobIdOfKey(key)).kind === 'pull') pulled = v;
  // A pull completed by another host's adopter (its host was lost) is empty: look the image up by name.
  const query = pulled?.manifestDigest || resolved.image;
  const [record] = await ctx.images.get(query);
  if (!record) return pullHere(ctx, rec.name, resolved.image, policy);
  return { rootfs: pulled?.rootfs || record.rootfs, config: record.config };
}

/**
 * The pull child left no image on this host: it failed its attempts (this host was
 * killed mid-pull more than BullMQ's stall limit allows; the child may fail and the
 * start still runs) or the store was pruned since. Pull it here rather than fail the
 * service for good: a retryable error retries this start with its backoff.
 */
async function pullHere(ctx: WorkerContext, subject: string, image: string, policy: RegistryPolicyData | undefined): Promise<ImageRuntime> {
  ctx.logger.info({ subject, image }, 'image not on this host: pulling it before the boot');
  const pulled = await pullImage(image, { home: ctx.home, ...(policy ? { policy } : {}) });
  return { rootfs: pulled.rootfs, config: pulled.config };
}

async function networkFor(ctx: WorkerContext, rec: ServiceRecord, resolved: ResolvedService): Promise<VmNetwork> {
  if (!resolved.group) return { mode: 'none' };
  const all = await ctx.state.listSummary();
  const members = all.filter((r) => r.group === resolved.group && r.desired === 'running').map((r) => r.name);
  return groupNetwork(resolved.group, members, rec.name, resolved.localOnly, resolved.egressAllow);
}
