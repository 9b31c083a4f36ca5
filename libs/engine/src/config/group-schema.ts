import { z } from 'zod';
import { AbsolutePathSchema, EntryNameSchema, EnvSchema, NameSchema, boundedList } from './field-schemas.js';

/** `[[group.volume]]`: a named base directory on the host that the group's services may mount. */
export const GroupVolumeSchema = z.strictObject({
  name: EntryNameSchema,
  /** Absolute base path on the host. */
  path: AbsolutePathSchema,
});

/** `[[group.env]]`: a named set of `KEY=value` entries services opt into with `group_envs`. */
export const GroupEnvSchema = z.strictObject({
  name: EntryNameSchema,
  envs: boundedList(EnvSchema).default([]),
});

/** `[[group]]`: services sharing a network, volumes and env sets. */
export const GroupSchema = z.strictObject({
  name: NameSchema,
  /** Restrict the group's network to the local host: no outbound internet (default true). */
  local_only: z.boolean().default(true),
  volume: boundedList(GroupVolumeSchema).default([]),
  env: boundedList(GroupEnvSchema).default([]),
});

export type Group = z.infer<typeof GroupSchema>;
export type GroupInput = z.input<typeof GroupSchema>;
export type GroupVolume = z.infer<typeof GroupVolumeSchema>;
export type GroupEnv = z.infer<typeof GroupEnvSchema>;
