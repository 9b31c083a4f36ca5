// Public surface of the orchestration domain: list exports by name.
export {
  QUEUE_PREFIX,
  QueueNames,
  findQueueNames,
  JobIds,
  PullJobDataSchema,
  StartJobDataSchema,
  StopJobDataSchema,
  GateJobDataSchema,
  DeployJobDataSchema,
  ExpandJobDataSchema,
  SandboxStartJobDataSchema,
  SandboxExpireJobDataSchema,
} from './queues.js';
export type {
  PullJobData,
  PullJobResult,
  StartJobData,
  StartJobResult,
  StopJobData,
  GateJobData,
  DeployJobData,
  ExpandJobData,
  SandboxStartJobData,
  SandboxExpireJobData,
} from './queues.js';
export { Orchestrator, DEFAULT_JOB_TUNING, newDeploymentId } from './orchestrator.js';
export { shapeDag, buildFlowTree, countFlowJobs } from './flow-builder.js';
export type { DagShape, FlowNode } from './flow-builder.js';
export { placeServices } from './placement.js';
export type { PlacementRequest } from './placement.js';
export { configHash, stableStringify } from './config-hash.js';
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
export { LogRetention, RotatingLogWriter } from './log-retention.js';
export type { LogRetentionPolicy, RotatingLogWriterOptions } from './log-retention.js';
export { RedisLogSink } from './log-sink.js';
export { buildVmSpec, groupNetwork } from './vm-spec-builder.js';
export type { BuildVmSpecInput, ImageRuntime } from './vm-spec-builder.js';
export { HostReaper, standaloneStartFlow } from './host-reaper.js';
export { leaseTiming, DEFAULT_LEASE_MS, MIN_LEASE_MS } from './lease-timing.js';
export type { LeaseTiming } from './lease-timing.js';
export type { ReaperOptions, ReapResult } from './host-reaper.js';
