import { z } from 'zod';
import {
  AbsolutePathSchema,
  ArgSchema,
  CommandSchema,
  EntryNameSchema,
  EnvSchema,
  GroupVolumeMountSchema,
  ImageReferenceStringSchema,
  NameSchema,
  PortSchema,
  VolumeSchema,
  boundedList,
  intInRange,
} from './field-schemas.js';
import { ConfigLimits, RESTART_POLICIES } from './limits.js';

/**
 * `group_volumes` entry: mount the group volume `name`; `path` is `"HOST:GUEST"` or
 * `"PATH"` where HOST is relative to the group volume's base path or absolute
 * inside it (the Rust original's semantics), and GUEST is absolute.
 */
export const ServiceGroupVolumeSchema = z.strictObject({
  name: EntryNameSchema,
  path: GroupVolumeMountSchema,
});

/** `[[service]]`: one microVM. */
export const ServiceSchema = z.strictObject({
  name: NameSchema,
  /** OCI image reference (Docker normalisation: `alpine` → docker.io/library/alpine:latest). */
  base: ImageReferenceStringSchema.optional(),
  group: NameSchema.optional(),
  command: CommandSchema.optional(),
  args: boundedList(ArgSchema).default([]),
  cpus: intInRange(ConfigLimits.cpusMin, ConfigLimits.cpusMax).default(ConfigLimits.cpusDefault),
  /** RAM in MiB. */
  ram: intInRange(ConfigLimits.ramMin, ConfigLimits.ramMax).default(ConfigLimits.ramDefault),
  workdir: AbsolutePathSchema.optional(),
  /** `"PORT"` or `"HOST:GUEST"`. */
  port: PortSchema.optional(),
  /** `"/path"` or `"/host:/guest"`. */
  volumes: boundedList(VolumeSchema).default([]),
  /** `KEY=value`; override group envs with the same key. */
  envs: boundedList(EnvSchema).default([]),
  depends_on: boundedList(NameSchema).default([]),
  /** Names of `[[group.env]]` sets of this service's group. */
  group_envs: boundedList(EntryNameSchema).default([]),
  group_volumes: boundedList(ServiceGroupVolumeSchema).default([]),
  /** When the supervisor restarts the service after it exits. */
  restart: z.enum(RESTART_POLICIES).default('on-failure'),
  /** Restarts allowed before the service is marked failed. */
  max_restarts: intInRange(ConfigLimits.maxRestartsMin, ConfigLimits.maxRestartsMax).default(
    ConfigLimits.maxRestartsDefault,
  ),
});

export type Service = z.infer<typeof ServiceSchema>;
export type ServiceInput = z.input<typeof ServiceSchema>;
export type ServiceGroupVolume = z.infer<typeof ServiceGroupVolumeSchema>;
