import type { GuestAgent, VmHandle } from '@monocore/engine';

/**
 * The guest agent of a VM (docs/AGENT.md): one session per handle, opened on
 * the first call; a backend without an agent (libkrun) rejects with
 * MC_VM_AGENT_UNSUPPORTED.
 */
export function openAgent(handle: VmHandle): Promise<GuestAgent> {
  return handle.agent();
}
