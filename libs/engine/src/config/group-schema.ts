import { z } from 'zod';
import { AbsolutePathSchema, EgressAllowListSchema, EntryNameSchema, EnvSchema, NameSchema, boundedList } from './field-schemas.js';

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

/**
 * `network = { outbound = true, allow = [...] }`: the group's way out (docs/NETWORK.md).
 * Replaces `local_only` (`local_only = false` is `network = { outbound = true }`); a
 * group sets one of the two, never both.
 */
export const GroupNetworkSchema = z.strictObject({
  outbound: z.boolean().meta({
    description: 'true: the VMs get outbound access (never the host, private ranges or other VMs); false: only the group network.',
  }),
  allow: EgressAllowListSchema.optional().meta({
    description:
      'Only these destinations: DNS names, *.suffix wildcards, IPv4 addresses, IPv4 CIDR ranges. Names resolve only through ' +
      "monocore's resolver; connections go only to addresses it answered for allowed names, or to listed ranges. Needs outbound = true.",
  }),
});

/** `[[group]]`: services sharing a network, volumes and env sets. */
export const GroupSchema = z.strictObject({
  name: NameSchema,
  /** Restrict the group's network to the local host: no outbound internet (default true). Superseded by `network`. */
  local_only: z.boolean().default(true),
  network: GroupNetworkSchema.optional(),
  volume: boundedList(GroupVolumeSchema).default([]),
  env: boundedList(GroupEnvSchema).default([]),
});

export type Group = z.infer<typeof GroupSchema>;
export type GroupInput = z.input<typeof GroupSchema>;
export type GroupVolume = z.infer<typeof GroupVolumeSchema>;
export type GroupEnv = z.infer<typeof GroupEnvSchema>;
export type GroupNetwork = z.infer<typeof GroupNetworkSchema>;
