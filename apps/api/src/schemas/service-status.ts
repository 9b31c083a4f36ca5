import { z } from 'zod';

/**
 * Response shapes. The orchestrator owns the state model (@monocore/engine
 * OrchestratorApi: ServiceStatus, PlannedService, UpResult, DownResult,
 * StateEvent); these schemas mirror it field by field for the OpenAPI document
 * and the response serializer. A field the engine adds must be added here.
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

export const UpResultSchema = z
  .object({
    deploymentId: z.string(),
    plan: z.array(PlannedServiceSchema).describe('services in start order'),
    services: z.array(ServiceStatusSchema),
    ok: z.boolean().optional().describe('with wait=true: every service reached running'),
  })
  .meta({ id: 'UpResult' });

export const DownResultSchema = z
  .object({
    deploymentId: z.string(),
    order: z.array(z.string()).describe('services in stop order (dependents first)'),
    services: z.array(ServiceStatusSchema),
  })
  .meta({ id: 'DownResult' });

export const StatusResponseSchema = z.object({ services: z.array(ServiceStatusSchema) }).meta({ id: 'StatusResponse' });

export const StateEventSchema = z
  .object({
    id: z.string().describe('Redis stream id; resend as Last-Event-ID (or ?since=) to resume'),
    time: z.string(),
    kind: z.enum(['transition', 'deployment', 'host']),
    service: z.string().optional(),
    from: z.string().optional(),
    to: z.string().optional(),
    host: z.string().optional(),
    deploymentId: z.string().optional(),
    detail: z.string().optional(),
  })
  .meta({ id: 'StateEvent' });
