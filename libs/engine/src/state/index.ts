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
