// Public surface of the vm domain: list exports by name.
export type { VmSpec, VmNetwork, VmExit, RlimitName } from './vm-spec.js';
export type { HypervisorBackend, BackendAvailability, VmHandle } from './hypervisor-backend.js';
export type {
  GuestAgent, AgentInfo, DetachedExec, ExecRequest, BufferedExecOptions, ExecExit, ExecResult, GuestProcess,
  FileSource, WriteFileOptions, GuestFileInfo, GuestFileRead, GuestIdentity, RefreshResult,
} from './guest-agent.js';
export { QemuBackend, type QemuBackendOptions, type QemuVmHandle, type BootTimings } from './qemu-backend.js';
export { DEFAULT_SPARES, sparesFromEnv } from './snapshot/spare-vms.js';
export { fileTail } from './file-tail.js';
export { findGuestKernel, DEFAULT_KERNEL_DIR, type GuestKernel } from './guest-kernel.js';
export { buildInitramfs, guestInitSourcePath, guestInitSources, guestInitCompileArgs, type Initramfs, type InitramfsOptions } from './initramfs-builder.js';
export { AgentSession, type AgentSessionOptions } from './agent/agent-session.js';
// The wire format, for peers that speak it (test guests, tools): docs/AGENT.md.
export { encodeFrame as encodeAgentFrame, FrameDecoder as AgentFrameDecoder, FrameType as AgentFrameType, MAX_PAYLOAD as AGENT_MAX_PAYLOAD, type Frame as AgentFrame } from './agent/agent-frame.js';
export { LANE_FILE_BYTES as AGENT_LANE_FILE_BYTES, LANE_SLOT_BYTES as AGENT_LANE_SLOT_BYTES } from './agent/agent-lane.js';
export { encodeRecords as encodeAgentRecords, parseRecords as parseAgentRecords } from './agent/agent-records.js';
export { resolveModuleOrder, GUEST_MODULES, type ModuleLoad } from './kernel-modules.js';
export { detectAccel, type Accel, type AccelChoice } from './acceleration.js';
export { cleanupOrphans, type OrphanCleanup } from './orphans.js';
export { cleanupEgressOrphans, egressUnavailable, EGRESS_POOL } from './egress-network.js';
export {
  EgressAllowList, parseEgressAllowEntry, checkEgressAllowEntry, egressAllowListProblems, egressBlockedRange,
  EGRESS_BLOCKED, EGRESS_BLOCKED_RANGES, type EgressAllowEntry, type EgressAllowListProblem,
} from './egress-allow-list.js';
export { outboundNetwork } from './outbound-network.js';
export { validateVmSpec } from './vm-spec-validation.js';
export { GroupSwitch } from './group-switch.js';
export { MicroVm, MicroVmBuilder } from './micro-vm.js';
export { selectBackend, probeBackends, chooseBackend, type BackendName, type BackendReport, type SelectBackendOptions, type SelectedBackend } from './select-backend.js';
export { LibkrunBackend, libkrunPaths, LIBKRUN_ALLOW_TSI_ENV, type LibkrunBackendOptions, type LibkrunVmHandle, type LibkrunHostFacts } from './libkrun-backend.js';
