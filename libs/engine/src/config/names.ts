import { ConfigLimits } from './limits.js';

/**
 * Service and group names: DNS labels (RFC 1123). Lowercase letters, digits and
 * `-`, starting and ending with a letter or digit, at most 63 characters. They are
 * safe as hostnames, file names under MONOCORE_HOME and Redis key parts — no `/`,
 * `.`, `..`, `:` or whitespace can ever appear.
 */
export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/**
 * Names of group volumes and group env sets: they never leave the config, so `_`
 * is also allowed (`app_env`), otherwise the same rules as service names.
 */
export const ENTRY_NAME_PATTERN = /^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$/;

/** Returns why `name` is not a valid service/group name, or undefined when it is. */
export function checkName(name: string, pattern: RegExp = NAME_PATTERN): string | undefined {
  const allowed = pattern === ENTRY_NAME_PATTERN ? 'a-z, 0-9, "-" and "_"' : 'a-z, 0-9 and "-"';
  if (name.length === 0) return 'name must not be empty';
  if (name.length > ConfigLimits.nameMaxLength) {
    return `name is ${name.length} characters long; the limit is ${ConfigLimits.nameMaxLength}`;
  }
  if (pattern.test(name)) return undefined;
  if (/[A-Z]/.test(name)) return `name "${name}" must be lowercase (allowed: ${allowed})`;
  if (/[/\\]|^\.{1,2}$|\.\./.test(name)) return `name "${name}" must not contain path separators or ".."`;
  return `name "${name}" may only use ${allowed}, and must start and end with a letter or digit`;
}
