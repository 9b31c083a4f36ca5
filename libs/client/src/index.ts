// @monocore/client: the TypeScript SDK of the monocore API. Types come from the
// zod schemas the API validates with (@monocore/api-schemas), re-exported here.
export { MonocoreClient } from './monocore-client.js';
export type { UpOptions, StopOptions, LogsOptions, EventsOptions } from './monocore-client.js';
export type { MonocoreClientOptions } from './http-transport.js';
export { Sandbox } from './sandbox.js';
export type { SandboxCallOptions, CreateSandboxOptions } from './sandbox.js';
export { Service } from './service.js';
export { ExecTarget } from './exec-target.js';
export type { Command, ExecOptions, ExecStreamOptions } from './exec-target.js';
export { ExecStream, isExit } from './exec-stream.js';
export type { ExecChunk, ExecEvent, ExecExit, CollectedExec } from './exec-stream.js';
export { ExecSession } from './exec-session.js';
export type { SessionOptions, SessionChunk } from './exec-session.js';
export { GuestFiles } from './guest-files.js';
export type { FileData, WriteFileOptions, FileReadStream, GuestPathKind } from './guest-files.js';
export { packDirectory, extractDirectory } from './local-tar.js';
export { MonocoreApiError, isMonocoreApiError } from './monocore-api-error.js';
export type { ApiIssue } from './monocore-api-error.js';
export { DEFAULT_API_PORT, defaultApiPort, defaultApiUrl } from './api-url.js';
export { localCredentialPath } from './local-credential.js';
export { readSse } from './sse-reader.js';
export type { SseEvent } from './sse-reader.js';
export { SANDBOX_ID_PATTERN } from '@monocore/api-schemas';
export type {
  CreateSandboxRequest,
  SandboxNetworkRequest,
  Sandbox as SandboxRecord,
  SandboxStatus,
  ExecRequest,
  ExecResult,
  FileWriteResult,
  ServiceStatus,
  PlannedService,
  UpResult,
  DownResult,
  StateEvent,
  DeploymentOutcome,
  HostStatus,
  Health,
  Selection,
} from '@monocore/api-schemas';
