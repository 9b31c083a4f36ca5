// The schemas of monocore's REST API, shared by the API (validation, OpenAPI)
// and its clients (types). zod only: importing this pulls in nothing else.
export { ErrorBodySchema } from './error-body.js';
export type { ErrorBody } from './error-body.js';
export { NameList, QueryBool } from './query.js';
export { LOCAL_TOKEN_HEADER } from './local-token-header.js';
export { HealthSchema } from './health.js';
export type { Health } from './health.js';
export {
  SANDBOX_STATUSES,
  ENDED_SANDBOX_STATUSES,
  SANDBOX_ID_PATTERN,
  SANDBOX_DEFAULTS,
  MAX_SANDBOX_LIFETIME_S,
  MAX_EXEC_TIMEOUT_S,
  SandboxStatusSchema,
  SandboxIdSchema,
  GuestPathSchema,
  EnvMapSchema,
  GuestUserSchema,
  ByteEncodingSchema,
  CreateSandboxRequestSchema,
  CreateSandboxQuerySchema,
  SandboxSchema,
  SandboxParamsSchema,
  ListSandboxesQuerySchema,
  SandboxListSchema,
  ExecRequestSchema,
  ExecResultSchema,
  NDJSON,
  ExecOutputLineSchema,
  ExecExitLineSchema,
  ExecErrorLineSchema,
  ExecStreamLineSchema,
  ExecSessionStartSchema,
  ExecSessionClientMessageSchema,
  WS_STREAM_STDOUT,
  WS_STREAM_STDERR,
  ExecSessionServerMessageSchema,
  TAR,
  FilesQuerySchema,
  FileWriteResultSchema,
  FILE_HEADERS,
  ServiceParamsSchema,
} from './sandbox.js';
export type {
  SandboxStatus,
  CreateSandboxRequest,
  Sandbox,
  SandboxList,
  ExecRequest,
  ExecResult,
  ExecStreamLine,
  ExecSessionStart,
  ExecSessionClientMessage,
  ExecSessionServerMessage,
  FilesQuery,
  FileWriteResult,
} from './sandbox.js';
export {
  ServiceStatusSchema,
  PlannedServiceSchema,
  UpResultSchema,
  DownResultSchema,
  StatusResponseSchema,
  StateEventSchema,
  DeploymentOutcomeSchema,
  UpQuerySchema,
  UpEnvelopeSchema,
  SelectionSchema,
  StopQuerySchema,
  StatusQuerySchema,
  LogsParamsSchema,
  LogsQuerySchema,
  EventsQuerySchema,
  DeploymentParamsSchema,
  DeploymentWaitQuerySchema,
} from './services.js';
export type {
  ServiceStatus,
  PlannedService,
  UpResult,
  DownResult,
  StatusResponse,
  StateEvent,
  DeploymentOutcome,
  UpEnvelope,
  Selection,
} from './services.js';
export { HostStatusSchema, HostsResponseSchema } from './hosts.js';
export type { HostStatus, HostsResponse } from './hosts.js';
