import { mkdir, readdir, rm } from 'node:fs/promises';
import type { Queue } from 'bullmq';
import type { Logger } from 'pino';
import {
  JobIds,
  MonocoreError,
  QueueNames,
  buildSandboxVmSpec,
  isMonocoreError,
  sandboxSubject,
  type GuestAgent,
  type ImageRuntime,
  type MonocoreHome,
  type SandboxRecord,
  type SandboxStatus,
  type SandboxStore,
  type VmHandle,
} from '@monocore/engine';
import { openAgent } from './open-agent.js';
import type { ServiceBackend } from './supervisor.js';

/**
 * Where one sandbox's VM is on this host — one field, so a late callback (a
 * boot that completes after a delete, an exit after a fence) finds its entry
 * in another phase and knows it is stale.
 *
 *   booting ──▶ running ──▶ ended
 *      └──────────────────▶ ended     (deleted, expired, lost, failed, fenced)
 *   running ──▶ pausing ──▶ (no entry: paused on disk)   pausing ──▶ running (the save failed) | ended
 *   (paused on disk) ──resume──▶ booting ──▶ running
 */
type SandboxPhase =
  | { kind: 'booting'; handle?: VmHandle }
  | { kind: 'running'; handle: VmHandle; agent: GuestAgent }
  | { kind: 'pausing'; handle: VmHandle; agent: GuestAgent }
  | { kind: 'ended'; status: SandboxStatus | 'fenced'; reason: string };

const NEXT: Record<SandboxPhase['kind'], readonly SandboxPhase['kind'][]> = {
  booting: ['booting', 'running', 'ended'], // booting → booting: the hypervisor process now exists
  running: ['pausing', 'ended'],
  pausing: ['running', 'ended'],
  ended: [],
};

interface Entry {
  id: string;
  epoch: number;
  cpus: number;
  ramMib: number;
  phase: SandboxPhase;
}

function move(e: Entry, to: SandboxPhase): void {
  if (!NEXT[e.phase.kind].includes(to.kind)) throw new Error(`sandbox ${e.id}: invalid VM phase transition ${e.phase.kind} → ${to.kind}`);
  e.phase = to;
}

const handleOf = (p: SandboxPhase): VmHandle | undefined => (p.kind === 'booting' || p.kind === 'running' || p.kind === 'pausing' ? p.handle : undefined);

export interface SandboxHostOptions {
  hostId: string;
  home: MonocoreHome;
  backend: ServiceBackend;
  store: SandboxStore;
  logger: Logger;
  /** The host queue (`host-<id>`) of a host, to drop a sandbox's pending expiry jobs when it ends. */
  queue(name: string): Queue;
  /** This host may (still) run the lease subject under `epoch` (HostLiveness). */
  mayRun(subject: string, epoch: number): boolean;
  /** The sandbox left this host for good: drop its lease. */
  release(subject: string, epoch: number): Promise<void>;
  /** Take the lease of a sandbox resumed here (HostLiveness.acquire). */
  acquire(subject: string, epoch: number): Promise<'held' | 'stale' | { pttlMs: number }>;
  /** The image a sandbox record names, as present on this host. */
  imageOf(rec: SandboxRecord): Promise<ImageRuntime>;
  bootTimeoutMs?: number;
}

/**
 * Owns the sandbox VMs of this host: boots them in sandbox mode (the guest
 * agent, no command), ends them (kill, disk deleted, lease and capacity
 * released, status recorded), and watches them: a VM that dies, or whose agent
 * stops answering, ends the sandbox as `lost` — it is never booted again.
 */
export class SandboxHost {
  readonly #entries = new Map<string, Entry>();

  constructor(readonly options: SandboxHostOptions) {}

  usage(): { cpus: number; ramMib: number } {
    let cpus = 0;
    let ramMib = 0;
    for (const e of this.#entries.values()) {
      cpus += e.cpus;
      ramMib += e.ramMib;
    }
    return { cpus, ramMib };
  }

  ids(): string[] {
    return [...this.#entries.keys()];
  }

  /** Host pids of the sandboxes' hypervisors (usage sampling, tests). */
  pids(): Array<{ id: string; pid: number }> {
    const out: Array<{ id: string; pid: number }> = [];
    for (const e of this.#entries.values()) {
      const h = handleOf(e.phase);
      if (h && h.pid > 0) out.push({ id: e.id, pid: h.pid });
    }
    return out;
  }

  /**
   * Boots the sandbox's VM and opens its agent (the handshake); resolves once
   * it accepts commands. The caller holds the lease. Throws when it ended
   * meanwhile (deleted or expired while booting) or could not boot.
   */
  async boot(rec: SandboxRecord, image: ImageRuntime): Promise<{ pid: number; boot: { from: 'template' | 'cold' | 'paused' | 'fork'; reason: string }; timings?: VmHandle['timings'] }> {
    const { home, backend } = this.options;
    if (!this.options.mayRun(sandboxSubject(rec.id), rec.epoch)) throw leaseLost(rec.id);
    const prev = this.#entries.get(rec.id);
    if (prev) {
      if (prev.phase.kind !== 'ended') throw new Error(`sandbox ${rec.id} is already ${prev.phase.kind} here`);
      this.#entries.delete(rec.id);
    }
    const e = this.#newEntry(rec);
    const stateDir = home.sandboxDir(rec.id);
    // A fresh disk: whatever an earlier attempt left (a worker that died mid-boot) never ran as this sandbox.
    await rm(stateDir, { recursive: true, force: true });
    await mkdir(stateDir, { recursive: true });
    const booting = e.phase;
    let handle: VmHandle;
    try {
      handle = await backend.start(this.#vmSpec(rec, image, stateDir));
    } catch (err) {
      if (e.phase === booting) this.#forget(e);
      throw err;
    }
    await this.#bringUp(e, handle);
    return { pid: handle.pid, boot: handle.boot ?? { from: 'cold', reason: `the ${backend.name} backend boots cold` }, ...(handle.timings ? { timings: handle.timings } : {}) };
  }

  /** The entry of a sandbox coming up here (booting, resuming, a fork child): it counts against capacity from now on. */
  #newEntry(rec: Pick<SandboxRecord, 'id' | 'epoch' | 'cpus' | 'ramMib'>): Entry {
    const e: Entry = { id: rec.id, epoch: rec.epoch, cpus: rec.cpus, ramMib: rec.ramMib, phase: { kind: 'booting' } };
    this.#entries.set(rec.id, e);
    return e;
  }

  #vmSpec(rec: SandboxRecord, image: ImageRuntime, stateDir: string): ReturnType<typeof buildSandboxVmSpec> {
    const spec = buildSandboxVmSpec(rec, image, stateDir);
    if (this.options.bootTimeoutMs !== undefined) spec.bootTimeoutMs = this.options.bootTimeoutMs;
    return spec;
  }

  /**
   * Entry `e` (booting) has its VM: wait until it started, open its agent, and make the sandbox
   * running here, watched — the one way boot, resume and fork bring a sandbox up. If the sandbox
   * ended meanwhile (deleted, expired, fenced) the VM is killed and that is thrown; if the VM or
   * its agent failed, the VM is killed, the entry forgotten and the error thrown.
   */
  async #bringUp(e: Entry, handle: VmHandle): Promise<GuestAgent> {
    if (e.phase.kind !== 'booting') {
      await handle.kill().catch(() => undefined);
      throw this.#endedWhileBooting(e);
    }
    move(e, { kind: 'booting', handle });
    const withHandle = e.phase;
    let agent: GuestAgent;
    try {
      await handle.started;
      agent = await openAgent(handle);
    } catch (err) {
      await handle.kill().catch(() => undefined);
      if (e.phase !== withHandle) throw this.#endedWhileBooting(e);
      this.#forget(e);
      throw err;
    }
    if (e.phase !== withHandle) throw this.#endedWhileBooting(e); // whoever ended it killed the handle
    move(e, { kind: 'running', handle, agent });
    this.#watch(e, handle, agent);
    return agent;
  }

  /** A running sandbox whose VM dies, or whose agent stops answering, is lost. */
  #watch(e: Entry, handle: VmHandle, agent: GuestAgent): void {
    const { logger } = this.options;
    void handle.wait().then((exit) => {
      if (e.phase.kind === 'running' && e.phase.handle === handle) {
        const why = `its VM exited unexpectedly (${exit.reason}${exit.exitCode !== null ? `, code ${exit.exitCode}` : ''}${exit.detail ? `: ${exit.detail.slice(-300)}` : ''})`;
        logger.warn({ sandbox: e.id, exit }, 'sandbox VM died: the sandbox is lost');
        void this.end(e.id, 'lost', why, 'MC_SANDBOX_LOST');
      }
    });
    void agent.closed.then((reason) => {
      if (e.phase.kind === 'running' && e.phase.agent === agent) {
        logger.warn({ sandbox: e.id, err: reason.message }, 'sandbox agent session ended: the sandbox is lost');
        void this.end(e.id, 'lost', `its guest agent stopped answering (${reason.code}: ${reason.message})`, 'MC_SANDBOX_LOST');
      }
    });
  }

  /**
   * Pause (docs/SNAPSHOTS.md): the VM is saved next to its disk and its QEMU ends; the sandbox
   * is recorded `paused` (its capacity released) and its lease dropped. Nothing of it stays in
   * this process: a restarted worker resumes it just the same.
   */
  async pause(id: string, reason: string): Promise<void> {
    const { backend, store, hostId } = this.options;
    const e = this.#entries.get(id);
    if (!e || e.phase.kind !== 'running') throw await this.notRunning(id);
    if (!backend.pause) throw new MonocoreError('MC_VM_SNAPSHOT_UNSUPPORTED', `the ${backend.name} backend cannot pause VMs`, { sandbox: id, backend: backend.name });
    const { handle, agent } = e.phase;
    move(e, { kind: 'pausing', handle, agent });
    const pausing = e.phase;
    try {
      await backend.pause(handle);
    } catch (err) {
      if (e.phase === pausing) move(e, { kind: 'running', handle, agent });
      throw err;
    }
    agent.close();
    if (e.phase !== pausing) throw await this.notRunning(id); // deleted or expired meanwhile: end() removed it
    this.#entries.delete(id);
    await store.transition(id, hostId, 'paused', { host: hostId, epoch: e.epoch, detail: reason, fields: { paused_at: Date.now() } });
    await this.options.release(sandboxSubject(id), e.epoch).catch(() => undefined);
    this.options.logger.info({ sandbox: id }, 'sandbox paused');
  }

  /**
   * Fork a sandbox running here into `childIds`, new sandboxes the API recorded `creating` on
   * this host (docs/SNAPSHOTS.md "Fork"): each gets the parent's memory, processes and disk as
   * they were at one instant, its own identity, and ends `running`; if the fork fails they all
   * end `failed` with the reason.
   */
  async fork(parentId: string, childIds: readonly string[]): Promise<void> {
    const { backend, store, hostId, home, logger } = this.options;
    const p = this.#entries.get(parentId);
    if (!p || p.phase.kind !== 'running') throw await this.notRunning(parentId);
    const parent = p.phase.handle;
    const fail = async (why: string): Promise<void> => {
      for (const c of childIds) await this.end(c, 'failed', `fork of ${parentId} failed: ${why}`, 'MC_VM_SNAPSHOT_FAILED').catch(() => undefined);
    };
    if (!backend.fork) {
      await fail(`the ${backend.name} backend cannot fork VMs`);
      throw new MonocoreError('MC_VM_SNAPSHOT_UNSUPPORTED', `the ${backend.name} backend cannot fork VMs`, { sandbox: parentId, backend: backend.name });
    }
    const parentRec = await store.require(parentId);
    const image = await this.options.imageOf(parentRec);
    const entries: Entry[] = [];
    let handles: VmHandle[];
    try {
      const specs = [];
      for (const id of childIds) {
        const rec = await store.require(id);
        if (rec.status !== 'creating' || rec.host !== hostId || rec.forkOf !== parentId) throw new MonocoreError('MC_INTERNAL', `sandbox ${id} is not a fork of ${parentId} waiting here`, { sandbox: id });
        if ((await this.options.acquire(sandboxSubject(id), rec.epoch)) !== 'held') throw leaseLost(id);
        entries.push(this.#newEntry(rec));
        const stateDir = home.sandboxDir(id);
        await rm(stateDir, { recursive: true, force: true });
        specs.push(this.#vmSpec(rec, image, stateDir));
      }
      handles = await backend.fork(parent, specs);
    } catch (err) {
      for (const e of entries) this.#forget(e);
      await fail((err as Error).message);
      throw err;
    }
    await Promise.all(
      entries.map(async (e, i) => {
        const handle = handles[i]!;
        try {
          await this.#bringUp(e, handle);
          const boot = handle.boot ?? { from: 'fork' as const, reason: `forked from ${parentId}` };
          await store.transition(e.id, hostId, 'running', {
            host: hostId,
            epoch: e.epoch,
            detail: `forked from ${parentId} on ${hostId}`,
            fields: { pid: handle.pid, started_at: Date.now(), last_activity: Date.now(), worker: parentRec.worker ?? '', boot_from: boot.from, boot_reason: boot.reason },
          });
        } catch (err) {
          logger.warn({ sandbox: e.id, parent: parentId, err: (err as Error).message }, 'forked sandbox did not come up');
          await this.end(e.id, 'failed', `fork of ${parentId}: ${(err as Error).message}`, 'MC_VM_SNAPSHOT_FAILED').catch(() => undefined);
        }
      }),
    );
  }

  /**
   * Resume a sandbox paused on this host: restored from its saved state with its processes
   * and disk, given a fresh clock and random pool, recorded `running`. A saved state that
   * cannot be restored (corrupted, another QEMU or machine shape) loses the sandbox; anything
   * else (no lease yet, no disk room) leaves it paused for a later try.
   */
  async resume(id: string): Promise<{ pid: number }> {
    const { backend, store, hostId, home, logger } = this.options;
    const rec = await store.get(id);
    if (!rec) throw new MonocoreError('MC_SANDBOX_NOT_FOUND', `no sandbox ${id}`, { sandbox: id });
    if (rec.status !== 'paused' || rec.host !== hostId) {
      throw new MonocoreError('MC_SANDBOX_NOT_PAUSED', `sandbox ${id} is ${rec.status}${rec.host !== hostId ? ` on host "${rec.host}"` : ''}, not paused here`, { sandbox: id, status: rec.status });
    }
    if (!backend.resume) throw new MonocoreError('MC_VM_SNAPSHOT_UNSUPPORTED', `the ${backend.name} backend cannot resume VMs`, { sandbox: id, backend: backend.name });
    if (this.#entries.has(id)) throw new MonocoreError('MC_SANDBOX_NOT_PAUSED', `sandbox ${id} is already being resumed`, { sandbox: id, status: rec.status });
    const lease = await this.options.acquire(sandboxSubject(id), rec.epoch);
    if (lease !== 'held') throw leaseLost(id);
    const e = this.#newEntry(rec);
    let handle: VmHandle | undefined;
    try {
      handle = await backend.resume(this.#vmSpec(rec, await this.options.imageOf(rec), home.sandboxDir(id)));
      await this.#bringUp(e, handle);
    } catch (err) {
      await handle?.kill().catch(() => undefined);
      this.#forget(e);
      if (isMonocoreError(err, 'MC_VM_SNAPSHOT_FAILED')) {
        logger.warn({ sandbox: id, err: err.message }, 'paused sandbox could not be resumed: lost');
        await this.end(id, 'lost', `its paused state could not be restored: ${err.message}`, 'MC_SANDBOX_LOST');
        throw new MonocoreError('MC_SANDBOX_LOST', `sandbox ${id} is lost: its paused state could not be restored (${err.message})`, { sandbox: id });
      }
      await this.options.release(sandboxSubject(id), rec.epoch).catch(() => undefined);
      throw err;
    }
    const boot = handle.boot ?? { from: 'paused' as const, reason: 'resumed' };
    await store.transition(id, hostId, 'running', {
      host: hostId,
      epoch: rec.epoch,
      detail: `resumed on ${hostId}`,
      fields: { pid: handle.pid, last_activity: Date.now(), boot_from: boot.from, boot_reason: boot.reason },
    });
    logger.info({ sandbox: id }, 'sandbox resumed');
    return { pid: handle.pid };
  }

  #endedWhileBooting(e: Entry): MonocoreError {
    const p = e.phase;
    if (p.kind === 'ended' && p.status === 'fenced') return leaseLost(e.id);
    return new MonocoreError('MC_SANDBOX_NOT_RUNNING', `sandbox ${e.id} ended while it booted (${p.kind === 'ended' ? p.status : p.kind})`, { sandbox: e.id });
  }

  #forget(e: Entry): void {
    if (this.#entries.get(e.id) === e) this.#entries.delete(e.id);
  }

  /** The agent of a running sandbox here, or the error its callers get. */
  async agentOf(id: string): Promise<GuestAgent> {
    const e = this.#entries.get(id);
    if (e?.phase.kind === 'running') return e.phase.agent;
    throw await this.notRunning(id);
  }

  /** Why a sandbox cannot take calls on this host, as its callers should hear it. */
  async notRunning(id: string): Promise<MonocoreError> {
    const rec = await this.options.store.get(id);
    if (!rec) return new MonocoreError('MC_SANDBOX_NOT_FOUND', `no sandbox ${id}`, { sandbox: id });
    const details = { sandbox: id, status: rec.status, ...(rec.reason ? { reason: rec.reason } : {}) };
    if (rec.status === 'lost' || (rec.status === 'running' && rec.host === this.options.hostId)) {
      return new MonocoreError('MC_SANDBOX_LOST', `sandbox ${id} is lost${rec.reason ? `: ${rec.reason}` : ''}; its state is gone (sandboxes are not recreated)`, details);
    }
    if (rec.status === 'creating') return new MonocoreError('MC_SANDBOX_NOT_RUNNING', `sandbox ${id} is still being created`, details);
    return new MonocoreError('MC_SANDBOX_NOT_RUNNING', `sandbox ${id} has ended (${rec.status})${rec.reason ? `: ${rec.reason}` : ''}`, details);
  }

  /** Maps an agent failure during a call: when its VM died or it was ended meanwhile, say that instead. */
  async mapError(id: string, err: unknown): Promise<unknown> {
    if (!isMonocoreError(err) || !err.code.startsWith('MC_AGENT_') || ['MC_AGENT_FILE_NOT_FOUND', 'MC_AGENT_FILE_ERROR', 'MC_AGENT_FILE_TOO_LARGE', 'MC_AGENT_REQUEST_INVALID'].includes(err.code)) {
      return err;
    }
    const e = this.#entries.get(id);
    const h = e ? handleOf(e.phase) : undefined;
    // The session ended under the call: give the VM a moment to be seen exiting, so the caller hears why.
    if (h) await Promise.race([h.wait(), new Promise((r) => setTimeout(r, 2000))]);
    const now = this.#entries.get(id);
    if (now?.phase.kind === 'running') return err;
    return this.notRunning(id);
  }

  /**
   * Ends a sandbox for good: kills its VM, deletes its disk, records `status`
   * (fenced by this host and its epoch), releases its lease and drops its
   * pending expiry jobs. Works for a sandbox still waiting for its start job
   * too (nothing runs yet). Idempotent.
   */
  async end(id: string, status: 'deleted' | 'expired' | 'lost' | 'failed', reason: string, code?: string): Promise<void> {
    const { store, hostId, logger } = this.options;
    const e = this.#entries.get(id);
    let epoch: number | undefined = e?.epoch;
    if (e && e.phase.kind !== 'ended') {
      const h = handleOf(e.phase);
      move(e, { kind: 'ended', status, reason });
      if (h) await h.kill().catch(() => undefined);
    }
    this.#entries.delete(id);
    if (epoch === undefined) epoch = (await store.get(id))?.epoch;
    await rm(this.options.home.sandboxDir(id), { recursive: true, force: true }).catch((err: unknown) =>
      logger.warn({ sandbox: id, err: (err as Error).message }, 'could not delete the sandbox disk'),
    );
    if (epoch !== undefined) {
      await store.tryTransition(id, hostId, status, { host: hostId, epoch, detail: reason, fields: code ? { code } : {} });
      await this.options.release(sandboxSubject(id), epoch).catch(() => undefined);
    }
    // The pending expiry jobs have nothing left to do (the one ending us now is active: not removable, and done).
    await Promise.all([this.#dropJob(id, 'timeout'), this.#dropJob(id, 'idle')]);
    logger.info({ sandbox: id, status, reason }, 'sandbox ended');
  }

  async #dropJob(id: string, why: 'timeout' | 'idle'): Promise<void> {
    // A delayed job can be removed; an active one (the one ending us) cannot, and need not be.
    await this.options.queue(QueueNames.host(this.options.hostId)).remove(JobIds.sandboxExpire(id, why)).catch(() => undefined);
  }

  /**
   * Fencing (HostLiveness): SIGKILL the VM at once, without waiting for Redis.
   * The sandbox cannot come back (its state is gone); reclaimFenced() records
   * it lost once Redis answers.
   */
  fence(id: string, epoch: number): void {
    const e = this.#entries.get(id);
    if (!e || e.epoch !== epoch || e.phase.kind === 'ended') return;
    const h = handleOf(e.phase);
    move(e, { kind: 'ended', status: 'fenced', reason: 'its lease could not be renewed in time' });
    void h?.kill().catch(() => undefined);
  }

  /** Redis answers again after a fence: the sandbox is lost (unless it ended meanwhile); its disk goes. */
  async reclaimFenced(id: string, epoch: number): Promise<void> {
    const e = this.#entries.get(id);
    if (e && e.epoch === epoch) this.#entries.delete(id);
    await rm(this.options.home.sandboxDir(id), { recursive: true, force: true }).catch(() => undefined);
    await this.options.store.tryTransition(id, this.options.hostId, 'lost', {
      host: this.options.hostId,
      epoch,
      detail: 'its host lost contact with Redis for longer than the fence time and killed its VM (fenced)',
      fields: { code: 'MC_SANDBOX_LOST' },
    });
    await this.options.release(sandboxSubject(id), epoch).catch(() => undefined);
  }

  /**
   * After this worker process (re)started: sandboxes that ran on this host
   * died with the previous process (their VMs are its children): they are
   * lost, and their disks are deleted. Sandboxes still `creating` are left to
   * their start job, which BullMQ hands to this process again.
   */
  async recoverAfterRestart(records: readonly SandboxRecord[]): Promise<string[]> {
    const lost: string[] = [];
    const mine = records.filter((r) => r.host === this.options.hostId);
    for (const r of mine) {
      if (r.status !== 'running') continue;
      const ok = await this.options.store.tryTransition(r.id, this.options.hostId, 'lost', {
        host: this.options.hostId,
        epoch: r.epoch,
        detail: 'its worker restarted: the VM died with it',
        fields: { code: 'MC_SANDBOX_LOST' },
      });
      if (ok !== null) lost.push(r.id);
    }
    // Paused sandboxes live on in their dirs (their saved VM and disk): they resume like before.
    const keep = new Set(mine.filter((r) => r.status === 'creating' || r.status === 'paused').map((r) => r.id));
    const dirs = await readdir(this.options.home.sandboxesDir).catch(() => [] as string[]);
    await Promise.all(dirs.filter((d) => !keep.has(d)).map((d) => rm(this.options.home.sandboxDir(d), { recursive: true, force: true }).catch(() => undefined)));
    return lost;
  }

  /** Worker shutdown: sandboxes cannot move to another host, so they end (lost: their state is gone). */
  async stopAll(): Promise<string[]> {
    const ids = this.ids();
    await Promise.all(ids.map((id) => this.end(id, 'lost', `its worker host "${this.options.hostId}" shut down`, 'MC_SANDBOX_LOST').catch(() => undefined)));
    return ids;
  }
}

function leaseLost(id: string): MonocoreError {
  return new MonocoreError('MC_ORCH_LEASE_EXPIRED', `sandbox ${id}: this host could not renew its lease in time and killed the VM (fenced)`, { sandbox: id });
}
