import { validateConfig } from '@monocore/engine';

/**
 * Validates a REST config body with the engine's validateConfig: the same
 * strict schema and cross-field rules as monocore.toml, throwing
 * MC_CONFIG_INVALID whose details.issues lists EVERY problem with its path.
 */
export function validateConfigBody(config: unknown): void {
  validateConfig(config, { source: 'the request body' });
}
