/**
 * What the API needs from the engine: the ORCHESTRATION-CORE contract
 * (`OrchestratorApi`, implemented by `Orchestrator`). Routes depend on this
 * interface only.
 */
export type {
  OrchestratorApi,
  Selector,
  UpOptions,
  UpResult,
  DownOptions,
  DownResult,
  PlannedService,
  ServiceStatus,
  StateEvent,
  EventsOptions,
  LogsOptions,
  DeploymentOutcome,
} from '@monocore/engine';
