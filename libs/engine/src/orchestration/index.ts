// Public surface of the orchestration domain: list exports by name.
export { QUEUE_PREFIX, QueueNames, PullJobDataSchema } from './queues.js';
export type { PullJobData, PullJobResult } from './queues.js';
export { Orchestrator, DEFAULT_JOB_TUNING } from './orchestrator.js';
export type {
  OrchestratorApi,
  OrchestratorOptions,
  JobTuning,
  Selector,
  UpOptions,
  UpResult,
  DownOptions,
  DownResult,
  RemoveOptions,
  PlannedService,
  ServiceStatus,
  StateEvent,
  EventsOptions,
  LogsOptions,
  DeploymentOutcome,
} from './orchestrator-api.js';
