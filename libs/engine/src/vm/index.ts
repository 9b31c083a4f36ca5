// Public surface of the vm domain: list exports by name.
export type { VmSpec, VmNetwork, VmExit } from './vm-spec.js';
export type { HypervisorBackend, BackendAvailability, VmHandle } from './hypervisor-backend.js';
