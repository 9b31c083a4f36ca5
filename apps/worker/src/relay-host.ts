import { MonocoreError, isMonocoreError, type GuestAgent, type RelayHost, type RelayTarget } from '@monocore/engine';
import { openAgent } from './open-agent.js';
import type { WorkerContext } from './worker-context.js';

/** Agent failures that are about the request, not about the session or the VM. */
const REQUEST_ERRORS = new Set(['MC_AGENT_FILE_NOT_FOUND', 'MC_AGENT_FILE_ERROR', 'MC_AGENT_FILE_TOO_LARGE', 'MC_AGENT_REQUEST_INVALID', 'MC_AGENT_TOO_MANY_CHANNELS']);

/** What the relay (exec and file calls from API processes) needs from this worker: the targets' agents. */
export function relayHost(ctx: WorkerContext): RelayHost {
  const notRunning = (name: string, how: string): MonocoreError =>
    new MonocoreError('MC_ORCH_SERVICE_NOT_RUNNING', `service "${name}" ${how}`, { service: name, host: ctx.hostId });
  return {
    worker: ctx.worker,
    async agentOf(target: RelayTarget): Promise<GuestAgent> {
      if (target.kind === 'sandbox') return ctx.sandboxes.agentOf(target.id);
      const handle = ctx.supervisor.runningHandle(target.name);
      if (!handle) throw notRunning(target.name, `is not running on host "${ctx.hostId}"`);
      return openAgent(handle);
    },
    async mapError(target: RelayTarget, err: unknown): Promise<unknown> {
      if (target.kind === 'sandbox') return ctx.sandboxes.mapError(target.id, err);
      if (isMonocoreError(err) && err.code.startsWith('MC_AGENT_') && !REQUEST_ERRORS.has(err.code) && !ctx.supervisor.runningHandle(target.name)) {
        return notRunning(target.name, `stopped during the call (${err.message})`);
      }
      return err;
    },
    onActivity(target: RelayTarget): void {
      if (target.kind === 'sandbox') void ctx.sandboxStore.touch(target.id).catch(() => undefined);
    },
    restarted(target: RelayTarget): MonocoreError {
      return target.kind === 'sandbox'
        ? new MonocoreError('MC_SANDBOX_LOST', `sandbox ${target.id}: its worker on host "${ctx.hostId}" restarted before it answered; the VM died with it`, { sandbox: target.id })
        : new MonocoreError('MC_EXEC_HOST_LOST', `service "${target.name}": its worker on host "${ctx.hostId}" restarted before it answered (retry)`, { service: target.name });
    },
    async deleteSandbox(id: string): Promise<void> {
      await ctx.sandboxes.end(id, 'deleted', 'deleted (DELETE /sandboxes/:id)');
    },
    async pauseSandbox(id: string): Promise<void> {
      await ctx.sandboxes.pause(id, 'paused (POST /sandboxes/:id/pause)');
    },
    async resumeSandbox(id: string): Promise<void> {
      await ctx.sandboxes.resume(id);
    },
    async forkSandbox(id: string, children: readonly string[]): Promise<void> {
      await ctx.sandboxes.fork(id, children);
    },
  };
}
