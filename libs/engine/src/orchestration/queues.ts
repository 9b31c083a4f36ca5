import type { Redis } from 'ioredis';
import { z } from 'zod';
import { RegistryPolicyDataSchema } from '../oci/registry-policy.js';

/**
 * BullMQ queue names and job payloads shared by the api, puller and worker.
 * Every queue uses one hash-tag prefix so a flow's keys live in one Redis
 * Cluster slot (otherwise CROSSSLOT: docs/ORCHESTRATION.md).
 */
export const QUEUE_PREFIX = '{monocore}';

export const QueueNames = {
  /** Pulls run on the host that will boot the service: one pull queue per host. */
  pull: (hostId: string): string => `pull-${hostId}`,
  /** Start/stop/remove jobs of the services placed on one host (job names: start, stop, remove). */
  host: (hostId: string): string => `host-${hostId}`,
  /** `await` gates (one per extra depends_on edge) — any worker processes them. */
  gate: 'gate',
  /** Request roots (one per up/down/remove) and stops of services whose host is gone — any worker. */
  deploy: 'deploy',
} as const;

/**
 * Every BullMQ queue under monocore's prefix, per-host ones (`pull-<host>`,
 * `host-<host>`) included: a queue writes `<prefix>:<name>:meta` as soon as
 * anyone opens it. Sorted by name.
 */
export async function findQueueNames(redis: Redis): Promise<string[]> {
  const names = new Set<string>();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${QUEUE_PREFIX}:*:meta`, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      const name = key.slice(QUEUE_PREFIX.length + 1, -':meta'.length);
      // Our own state keys share the prefix ({monocore}:service:<name>…): queue names never contain ':'.
      if (name.length > 0 && !name.includes(':')) names.add(name);
    }
  } while (cursor !== '0');
  return [...names].sort();
}

/** Payload of a pull job; parsed again by the puller when it dequeues the job. */
export const PullJobDataSchema = z.strictObject({
  /** Image reference as written in the config (normalised by the puller). */
  image: z.string().min(1),
  /** "os/arch[/variant]"; default: the host's platform. */
  platform: z.string().optional(),
  deploymentId: z.string().optional(),
  service: z.string().optional(),
  /** Set when a REST caller asked for the image: the puller checks every address it connects to. */
  registryPolicy: RegistryPolicyDataSchema.optional(),
});
export type PullJobData = z.infer<typeof PullJobDataSchema>;

/** What a completed pull job returns (the job's returnvalue). */
export interface PullJobResult {
  /** Normalised reference, e.g. docker.io/library/alpine:latest. */
  reference: string;
  manifestDigest: string;
  /** Host path of the unpacked read-only rootfs. */
  rootfs: string;
}

const Name = z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/);
const Id = z.string().regex(/^[A-Za-z0-9._-]+$/);

/** `start` job: make the service run its current desired config on `host`. */
export const StartJobDataSchema = z.strictObject({
  deploymentId: Id,
  service: Name,
  host: z.string().min(1),
  /** Placement epoch the job was created for (fencing). */
  epoch: z.number().int().nonnegative(),
  /** Gate job ids (queue `gate`) waiting for this service: promoted as soon as it is running or failed. */
  awaitedBy: z.array(Id).default([]),
  /**
   * Standalone start (a reschedule after a host was lost): no flow children
   * gate it, so it polls its dependencies' states itself.
   */
  pollDependencies: z.boolean().default(false),
  /** The REST caller's registry policy, for a pull the start job must do itself (its pull child left no image). */
  registryPolicy: RegistryPolicyDataSchema.optional(),
});
export type StartJobData = z.infer<typeof StartJobDataSchema>;

/** `stop` / `remove` job: stop the service (dependents first), optionally delete its layer and state. */
export const StopJobDataSchema = z.strictObject({
  deploymentId: Id,
  service: Name,
  host: z.string(),
  remove: z.boolean(),
  awaitedBy: z.array(Id).default([]),
});
export type StopJobData = z.infer<typeof StopJobDataSchema>;

/** `await` gate: completes when `target` reached the condition in this deployment; fails if it never can. */
export const GateJobDataSchema = z.strictObject({
  deploymentId: Id,
  /** The service whose job waits on this gate. */
  parent: Name,
  target: Name,
  condition: z.enum(['started', 'stopped']),
});
export type GateJobData = z.infer<typeof GateJobDataSchema>;

/** Root of a request's flow. */
export const DeployJobDataSchema = z.strictObject({
  deploymentId: Id,
  kind: z.enum(['up', 'down', 'remove']),
  services: z.array(Name),
});
export type DeployJobData = z.infer<typeof DeployJobDataSchema>;

/**
 * `expand` (queue `deploy`): the API records the request and enqueues this one
 * job carrying the whole flow tree; a worker adds the flow (one atomic
 * FlowProducer.add). The API's latency then does not grow with the number of
 * jobs in the flow, and the flow is still created all-or-nothing.
 */
export const ExpandJobDataSchema = z.strictObject({
  deploymentId: Id,
  /** A FlowJob tree (validated by BullMQ when added; job payloads are parsed again when processed). */
  flow: z.object({ name: z.string(), queueName: z.string() }).passthrough(),
});
export type ExpandJobData = z.infer<typeof ExpandJobDataSchema>;

/** `sandbox-start` (queue `host-<id>`): boot a sandbox placed on this host, after its pull child. */
export const SandboxStartJobDataSchema = z.strictObject({
  sandbox: z.string().regex(/^sb-[a-z0-9]{12}$/),
  host: z.string().min(1),
  epoch: z.number().int().nonnegative(),
});
export type SandboxStartJobData = z.infer<typeof SandboxStartJobDataSchema>;

/**
 * `sandbox-expire` (queue `host-<id>`, delayed): end the sandbox as expired.
 * `timeout`: its maximum life; `idle`: no exec or file call for idle_timeout_s
 * (the job re-delays itself when there was activity meanwhile).
 */
export const SandboxExpireJobDataSchema = z.strictObject({
  sandbox: z.string().regex(/^sb-[a-z0-9]{12}$/),
  host: z.string().min(1),
  why: z.enum(['timeout', 'idle']),
});
export type SandboxExpireJobData = z.infer<typeof SandboxExpireJobDataSchema>;

/** What a completed start job returns. */
export interface StartJobResult {
  service: string;
  /** fenced: the lease could not be renewed while it booted; HostLiveness boots it again once Redis answers. */
  action: 'started' | 'unchanged' | 'superseded' | 'moved' | 'fenced';
  pid?: number;
}

/** Deterministic job ids (no ':'; service names are [a-z0-9-], so '.' separates safely). */
export const JobIds = {
  start: (deploymentId: string, service: string): string => `${deploymentId}.start.${service}`,
  stop: (deploymentId: string, service: string): string => `${deploymentId}.stop.${service}`,
  pull: (deploymentId: string, service: string): string => `${deploymentId}.pull.${service}`,
  gate: (deploymentId: string, parent: string, target: string): string => `${deploymentId}.gate.${parent}.${target}`,
  reschedule: (deploymentId: string, service: string, epoch: number): string =>
    `${deploymentId}.restart.${service}.e${epoch}`,
  sandboxStart: (sandbox: string): string => `${sandbox}.start`,
  sandboxPull: (sandbox: string): string => `${sandbox}.pull`,
  sandboxExpire: (sandbox: string, why: 'timeout' | 'idle'): string => `${sandbox}.${why}`,
} as const;
