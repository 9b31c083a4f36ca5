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
  name: NameSchema.meta({ description: 'Service name: a DNS label (a-z, 0-9, "-"; 1..63), unique in the config.' }),
  base: ImageReferenceStringSchema.optional().meta({
    description: 'OCI image reference, Docker normalisation (alpine → docker.io/library/alpine:latest).',
  }),
  group: NameSchema.optional().meta({ description: 'Name of the [[group]] this service belongs to.' }),
  command: CommandSchema.optional().meta({ description: "Program to run in the guest (default: the image's own)." }),
  args: boundedList(ArgSchema).default([]).meta({ description: 'Arguments for command.' }),
  cpus: intInRange(ConfigLimits.cpusMin, ConfigLimits.cpusMax)
    .default(ConfigLimits.cpusDefault)
    .meta({ description: 'vCPUs.' }),
  ram: intInRange(ConfigLimits.ramMin, ConfigLimits.ramMax)
    .default(ConfigLimits.ramDefault)
    .meta({ description: 'RAM in MiB.' }),
  disk: intInRange(ConfigLimits.diskMin, ConfigLimits.diskMax)
    .optional()
    .meta({ description: `Writable disk in MiB (sparse; default ${ConfigLimits.diskDefault}): the guest gets ENOSPC when it is full, the host keeps the rest.` }),
  workdir: AbsolutePathSchema.optional().meta({ description: 'Absolute working directory in the guest.' }),
  port: PortSchema.optional().meta({
    description: '"PORT" or "HOST:GUEST", each 1..65535; a host port belongs to one service.',
  }),
  volumes: boundedList(VolumeSchema)
    .default([])
    .meta({ description: '"/path" or "/host:/guest": absolute, no "..", one mount per guest path.' }),
  envs: boundedList(EnvSchema)
    .default([])
    .meta({ description: 'KEY=value entries; they override group envs with the same key.' }),
  depends_on: boundedList(NameSchema)
    .default([])
    .meta({ description: 'Services that must be running first; no cycles, chains of at most 32 services.' }),
  group_envs: boundedList(EntryNameSchema)
    .default([])
    .meta({ description: "Names of [[group.env]] sets of this service's group." }),
  group_volumes: boundedList(ServiceGroupVolumeSchema)
    .default([])
    .meta({ description: "Mounts of [[group.volume]] entries of this service's group." }),
  restart: z.enum(RESTART_POLICIES).default('on-failure').meta({
    description: 'on-failure: restart after a non-zero exit; always: after any exit; no: never.',
  }),
  max_restarts: intInRange(ConfigLimits.maxRestartsMin, ConfigLimits.maxRestartsMax)
    .default(ConfigLimits.maxRestartsDefault)
    .meta({ description: 'Restarts before the service is marked failed.' }),
});

export type Service = z.infer<typeof ServiceSchema>;
export type ServiceInput = z.input<typeof ServiceSchema>;
export type ServiceGroupVolume = z.infer<typeof ServiceGroupVolumeSchema>;
