import { unwrap, type ParseResult } from './port-mapping.js';

/** A parsed `KEY=value` environment entry. The value may be empty and may contain `=`. */
export interface EnvVar {
  key: string;
  value: string;
}

/** POSIX-portable variable names (what every shell accepts). */
export const ENV_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function tryParseEnvVar(input: string): ParseResult<EnvVar> {
  const eq = input.indexOf('=');
  if (eq < 0) return { ok: false, error: `env "${input}" must be KEY=value` };
  const key = input.slice(0, eq);
  if (!ENV_KEY_PATTERN.test(key)) {
    return { ok: false, error: `env "${input}": key "${key}" must match [A-Za-z_][A-Za-z0-9_]*` };
  }
  if (input.includes('\0')) return { ok: false, error: `env "${key}": value must not contain NUL bytes` };
  return { ok: true, value: { key, value: input.slice(eq + 1) } };
}

/** Parses `KEY=value`; throws MC_CONFIG_INVALID naming the problem. */
export function parseEnvVar(input: string): EnvVar {
  return unwrap(tryParseEnvVar(input));
}
