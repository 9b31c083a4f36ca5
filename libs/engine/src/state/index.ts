// Public surface of the state domain: list exports by name.
export {
  SERVICE_STATUSES,
  LIVE_STATUSES,
  SETTLED_UP_STATUSES,
  isServiceStatus,
  canTransition,
  allowedSources,
  assertTransition,
  formatState,
} from './service-state.js';
export type { ServiceStatusName, ServiceState } from './service-state.js';
export { Keys, HASH_TAG, STREAM_CAPS, sandboxSubject, sandboxOfSubject, leaseRecordKey } from './keys.js';
export { StateStore } from './state-store.js';
export { tailStream, tailEvents, lastStreamId } from './stream-tail.js';
export type { StreamEntry, TailOptions } from './stream-tail.js';
export type { TransitionOptions } from './state-store.js';
export { HostRegistry, heartbeatAgeMs } from './host-registry.js';
export type { HostInfo, HostCapacity, HostSpares, HostUsage } from './host-registry.js';
export { parseServiceRecord, toServiceStatus, parseStateEvent } from './service-record.js';
export type { ServiceRecord, ServiceStatus, StateEvent } from './service-record.js';
