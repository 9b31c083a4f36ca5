import { z } from 'zod';
import { NameList, QueryBool } from './query.js';

/**
 * Services over REST (docs/API.md "Routes"): the queries and bodies of /up,
 * /down, /remove, /status, /services/:name/logs, /events and
 * /deployments/:id/wait, and what they answer. The API validates with these
 * schemas and generates its OpenAPI document from them; clients type
 * themselves from them. Fields are camelCase on these routes.
 *
 * The configuration itself (the body of /up) is the engine's model of
 * monocore.toml; it is validated by the API (MC_CONFIG_INVALID with every
 * issue), so here it is only "an object".
 */

// --- the selection of /down and /remove (declared first: the OpenAPI document lists schemas in this order) --

/** Selects what /down and /remove act on: everything, one group, or named services. */
export const SelectionSchema = z
  .strictObject({
    group: z.string().min(1).max(63).optional().describe('only the services of this group'),
    services: z.array(z.string().min(1).max(63)).max(1024).optional().describe('only these services'),
  })
  .meta({ id: 'Selection' });
export type Selection = z.input<typeof SelectionSchema>;

// --- what the routes answer ---------------------------------------------------

/**
 * The orchestrator owns the state model (@monocore/engine OrchestratorApi:
 * ServiceStatus, PlannedService, UpResult, DownResult, StateEvent); these
 * schemas mirror it field by field for the OpenAPI document and the response
 * serializer. A field the engine adds must be added here.
 */
export const ServiceStatusSchema = z
  .object({
    name: z.string(),
    group: z.string().optional(),
    status: z
      .string()
      .describe('actual state: pending, pulling, starting, running, restarting, exited, failed, blocked, stopping, stopped, lost'),
    desired: z.enum(['running', 'stopped']).describe('what the last up/down asked for'),
    host: z.string().optional().describe('id of the host the service is placed on'),
    pid: z.number().int().optional(),
    attempts: z.number().int().describe('boot attempts in the current deployment'),
    restarts: z.number().int().describe('restarts after unexpected exits'),
    startedAt: z.string().optional().describe('ISO time the service last reached running'),
    exitCode: z.number().int().optional(),
    reason: z.string().optional().describe('why it failed (status failed)'),
    blockedBy: z.string().optional().describe('the dependency that failed (status blocked)'),
    lastError: z.string().optional(),
    cpuPercent: z.number().optional(),
    memoryBytes: z.number().optional(),
    deploymentId: z.string().optional(),
    configHash: z.string().optional(),
    image: z.string().optional(),
    updatedAt: z.string().optional(),
  })
  .meta({ id: 'ServiceStatus' });
export type ServiceStatus = z.infer<typeof ServiceStatusSchema>;

export const PlannedServiceSchema = z
  .object({
    name: z.string(),
    group: z.string().optional(),
    host: z.string(),
    level: z.number().int().describe('topological level: 0 has no dependencies'),
    dependsOn: z.array(z.string()),
    action: z.enum(['start', 'restart', 'unchanged']),
    configHash: z.string(),
  })
  .meta({ id: 'PlannedService' });
export type PlannedService = z.infer<typeof PlannedServiceSchema>;

export const UpResultSchema = z
  .object({
    deploymentId: z.string(),
    plan: z.array(PlannedServiceSchema).describe('services in start order'),
    services: z.array(ServiceStatusSchema),
    ok: z.boolean().optional().describe('with wait=true: every service reached running'),
  })
  .meta({ id: 'UpResult' });
export type UpResult = z.infer<typeof UpResultSchema>;

export const DownResultSchema = z
  .object({
    deploymentId: z.string(),
    order: z.array(z.string()).describe('services in stop order (dependents first)'),
    services: z.array(ServiceStatusSchema),
  })
  .meta({ id: 'DownResult' });
export type DownResult = z.infer<typeof DownResultSchema>;

export const StatusResponseSchema = z.object({ services: z.array(ServiceStatusSchema) }).meta({ id: 'StatusResponse' });
export type StatusResponse = z.infer<typeof StatusResponseSchema>;

export const StateEventSchema = z
  .object({
    id: z.string().describe('Redis stream id; resend as Last-Event-ID (or ?since=) to resume'),
    time: z.string(),
    kind: z.enum(['transition', 'deployment', 'host', 'sandbox']).describe('sandbox: a sandbox changed status (sandbox, from, to, detail = the reason)'),
    service: z.string().optional(),
    sandbox: z.string().optional().describe('kind sandbox: the sandbox id'),
    from: z.string().optional(),
    to: z.string().optional(),
    host: z.string().optional(),
    deploymentId: z.string().optional(),
    detail: z.string().optional(),
  })
  .meta({ id: 'StateEvent' });
export type StateEvent = z.infer<typeof StateEventSchema>;

export const DeploymentOutcomeSchema = z
  .object({
    deploymentId: z.string(),
    ok: z.boolean().describe('every service reached its goal (running for up, stopped for down/remove)'),
    services: z.array(ServiceStatusSchema),
  })
  .meta({ id: 'DeploymentOutcome' });
export type DeploymentOutcome = z.infer<typeof DeploymentOutcomeSchema>;

// --- POST /up ------------------------------------------------------------------

export const UpQuerySchema = z.strictObject({
  group: z.string().min(1).max(63).optional().describe('start only this group'),
  services: NameList.optional(),
  wait: QueryBool.optional().describe('answer only when every service is running or has failed'),
  timeout: z.coerce.number().int().min(1).max(3600).optional().describe('with wait=true: seconds to wait at most'),
});

/** The alternative body form of /up that carries options beside the config. */
export const UpEnvelopeSchema = z.strictObject({
  config: z.unknown(),
  group: z.string().min(1).max(63).optional(),
  services: z.array(z.string().min(1).max(63)).max(1024).optional(),
  wait: z.boolean().optional(),
  timeout: z.number().int().min(1).max(3600).optional().describe('seconds'),
});
export type UpEnvelope = z.input<typeof UpEnvelopeSchema>;

// --- POST /down, POST /remove ----------------------------------------------------

export const StopQuerySchema = z.strictObject({
  wait: QueryBool.optional().describe('answer only when every selected service has stopped'),
  timeout: z.coerce.number().int().min(1).max(3600).optional().describe('with wait=true: seconds to wait at most'),
});

// --- GET /status -------------------------------------------------------------------

export const StatusQuerySchema = z.strictObject({
  group: z.string().min(1).max(63).optional().describe('only services of this group'),
  services: NameList.optional(),
  status: NameList.optional().describe('only services in one of these states, e.g. running,failed'),
});

// --- GET /services/:name/logs --------------------------------------------------------

export const LogsParamsSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'a service name (lowercase letters, digits and "-")'),
});
export const LogsQuerySchema = z.strictObject({
  stream: z.enum(['stdout', 'stderr']).default('stdout'),
  tail: z.coerce.number().int().min(0).max(100_000).optional().describe('last N lines (default 100)'),
  follow: QueryBool.default(false).describe('keep the response open and stream new lines (chunked text, or SSE with Accept: text/event-stream)'),
});

// --- GET /events -------------------------------------------------------------------------

export const EventsQuerySchema = z.strictObject({
  since: z
    .string()
    .regex(/^(\d+-\d+|\d+|\$)$/, 'a Redis stream id such as 1700000000000-0, "0" for everything retained, or "$"')
    .optional()
    .describe('resume after this event id (also read from the Last-Event-ID header); default: only new events'),
  services: NameList.optional().describe('only events of these services'),
  sandboxes: z
    .preprocess((v) => (typeof v === 'string' ? v.split(',') : v), z.array(z.string().regex(/^sb-[a-z0-9]{12}$/)).max(1024))
    .optional()
    .describe('only events of these sandboxes (comma-separated ids)'),
  deployment: z.string().min(1).max(128).optional().describe('only events of this deployment'),
});

// --- GET /deployments/:id/wait ---------------------------------------------------------------

export const DeploymentParamsSchema = z.strictObject({
  id: z.string().min(1).max(128).regex(/^[A-Za-z0-9._-]+$/, 'a deployment id as returned by /up, /down or /remove'),
});
export const DeploymentWaitQuerySchema = z.strictObject({
  timeout: z.coerce.number().int().min(1).max(3600).optional().describe('seconds to wait at most (504 MC_ORCH_TIMEOUT after)'),
});
