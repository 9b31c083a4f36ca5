import { MonocoreConfigSchema } from '@monocore/engine';

/**
 * The configuration as JSON: the engine's own schema for monocore.toml
 * (`service` = the [[service]] tables, `group` = the [[group]] tables), so the
 * OpenAPI document shows exactly what validateConfig accepts. The /up route
 * validates with validateConfig itself to report every issue at once.
 */
export const ConfigBodySchema = MonocoreConfigSchema.meta({
  id: 'MonocoreConfig',
  description: 'the configuration: the same model and keys as monocore.toml',
});
