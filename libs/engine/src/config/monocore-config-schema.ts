import { z } from 'zod';
import { boundedList } from './field-schemas.js';
import { GroupSchema } from './group-schema.js';
import { ServiceSchema } from './service-schema.js';

/**
 * The whole `monocore.toml` (and the JSON body of the REST API, same keys):
 * `service` is the `[[service]]` array of tables, `group` the `[[group]]` one.
 * This schema checks shapes and single fields; validateConfig adds the
 * cross-field rules (references, duplicates, cycles, ports).
 */
export const MonocoreConfigSchema = z.strictObject({
  service: boundedList(ServiceSchema).default([]),
  group: boundedList(GroupSchema).default([]),
});

export type MonocoreConfig = z.infer<typeof MonocoreConfigSchema>;
/** What a user may write (defaults not yet applied). */
export type MonocoreConfigInput = z.input<typeof MonocoreConfigSchema>;
