// Public surface of the sandbox domain: list exports by name.
export {
  SANDBOX_STATUSES,
  ENDED_SANDBOX_STATUSES,
  isEndedSandboxStatus,
  canSandboxTransition,
  sandboxSources,
  assertSandboxTransition,
} from './sandbox-state.js';
export type { SandboxStatus } from './sandbox-state.js';
export { parseSandboxRecord, sandboxRecordFields, toSandbox } from './sandbox-record.js';
export { sandboxNetwork } from './sandbox-network.js';
export type { SandboxNetwork } from './sandbox-network.js';
export type { SandboxRecord } from './sandbox-record.js';
export { SandboxStore, DEFAULT_SANDBOX_RETENTION_MS } from './sandbox-store.js';
export type { SandboxTransitionOptions } from './sandbox-store.js';
export { SandboxControl, newSandboxId } from './sandbox-control.js';
export { SandboxChanges } from './sandbox-changes.js';
export type { SandboxApi, SandboxControlOptions, CreateSandboxInput, CreateOptions } from './sandbox-control.js';
export { buildSandboxVmSpec } from './sandbox-vm-spec.js';
