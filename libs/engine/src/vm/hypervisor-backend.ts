import type { GuestAgent } from './guest-agent.js';
import type { BootTimings } from './qemu-vm.js';
import type { VmExit, VmSpec } from './vm-spec.js';

/** Result of probing a backend on this host: usable, or the reason it is not. */
export type BackendAvailability =
  | { available: true; accel: string; detail?: string }
  | { available: false; reason: string };

/** A booted (or booting) VM owned by this process. */
export interface VmHandle {
  readonly id: string;
  /** Host pid of the hypervisor (or of the child process that became the VM). */
  readonly pid: number;
  /** Resolves when the guest reports its command has started; rejects if it ends first. */
  readonly started: Promise<void>;
  /** Restored from a template or booted cold, and why (qemu; docs/SNAPSHOTS.md). Absent: booted cold. */
  readonly boot?: { from: 'template' | 'cold' | 'paused' | 'fork'; reason: string };
  /** Where the start's time went, ms since the hypervisor was spawned (qemu; for debug logs). */
  readonly timings?: BootTimings;
  /** Resolves exactly once, when the VM is gone (never rejects). */
  wait(): Promise<VmExit>;
  /** Graceful stop (SIGTERM to the guest command), then kill after timeoutMs. Idempotent. */
  stop(options?: { timeoutMs?: number }): Promise<VmExit>;
  /** Immediate kill. Idempotent. */
  kill(): Promise<VmExit>;
  /**
   * The guest agent (docs/AGENT.md): exec, files, identity. One session per
   * handle, opened on the first call once the guest has started; later calls
   * return it, or reject with the reason it ended (MC_AGENT_*). A backend
   * without an agent rejects with MC_VM_AGENT_UNSUPPORTED.
   */
  agent(): Promise<GuestAgent>;
}

/**
 * One interface, several implementations (qemu-backend.ts, libkrun-backend.ts).
 * A backend that cannot run here says why from available() instead of throwing
 * at import time.
 */
export interface HypervisorBackend {
  readonly name: 'qemu' | 'libkrun';
  available(): Promise<BackendAvailability>;
  start(spec: VmSpec): Promise<VmHandle>;
}
