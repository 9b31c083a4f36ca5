// Public surface of the config domain: list exports by name.
export {
  MonocoreConfigSchema,
  type MonocoreConfig,
  type MonocoreConfigInput,
} from './monocore-config-schema.js';
export {
  ServiceSchema,
  ServiceGroupVolumeSchema,
  type Service,
  type ServiceInput,
  type ServiceGroupVolume,
} from './service-schema.js';
export {
  GroupSchema,
  GroupVolumeSchema,
  GroupEnvSchema,
  GroupNetworkSchema,
  type Group,
  type GroupNetwork,
  type GroupInput,
  type GroupVolume,
  type GroupEnv,
} from './group-schema.js';
export { EgressAllowEntrySchema, EgressAllowListSchema } from './field-schemas.js';
export { ConfigLimits, RESTART_POLICIES, type RestartPolicy } from './limits.js';
export { NAME_PATTERN, ENTRY_NAME_PATTERN, checkName } from './names.js';
export { parsePortMapping, tryParsePortMapping, type PortMapping, type ParseResult } from './port-mapping.js';
export {
  parseVolumeMapping,
  tryParseVolumeMapping,
  type VolumeMapping,
  type VolumePathOptions,
} from './volume-mapping.js';
export { parseEnvVar, tryParseEnvVar, ENV_KEY_PATTERN, type EnvVar } from './env-var.js';
export { formatPath, formatIssue, type ConfigIssue } from './config-issue.js';
export { SourcePositionIndex, type SourcePosition } from './source-positions.js';
export {
  validateConfig,
  checkConfig,
  configInvalidError,
  type ConfigCheckResult,
  type ValidateOptions,
} from './validate-config.js';
export { parseConfigToml, checkConfigToml, type ParseTomlOptions } from './parse-config-toml.js';
export { loadConfigFile, readConfigFile, MAX_CONFIG_FILE_BYTES } from './load-config-file.js';
export { resolveService, resolveServices, type ResolvedService } from './resolve-service.js';
