import { z } from 'zod';

/**
 * BullMQ queue names and job payloads shared by the api, puller and worker.
 * Every queue uses one hash-tag prefix so a flow's keys live in one Redis
 * Cluster slot (FLOWS.md: otherwise CROSSSLOT).
 */
export const QUEUE_PREFIX = '{monocore}';

export const QueueNames = {
  /** Pulls run on the host that will boot the service: one pull queue per host. */
  pull: (hostId: string): string => `pull-${hostId}`,
} as const;

/** Payload of a pull job; parsed again by the puller when it dequeues the job. */
export const PullJobDataSchema = z.strictObject({
  /** Image reference as written in the config (normalised by the puller). */
  image: z.string().min(1),
  /** "os/arch[/variant]"; default: the host's platform. */
  platform: z.string().optional(),
  deploymentId: z.string().optional(),
  service: z.string().optional(),
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
