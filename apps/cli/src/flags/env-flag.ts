import { MonocoreError } from '@monocore/engine/errors';

/** -e K=V sets; -e K copies K from this environment (like docker); undefined when K is not set here. */
export function parseEnvFlag(value: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const eq = value.indexOf('=');
  const key = eq < 0 ? value : value.slice(0, eq);
  if (!/^[^=\0]+$/.test(key) || value.includes('\0')) {
    throw new MonocoreError('MC_USAGE', `-e ${JSON.stringify(value)}: expected KEY=value (or KEY to copy it from this environment)`);
  }
  if (eq >= 0) return value;
  return env[key] !== undefined ? `${key}=${env[key]}` : undefined;
}

/** Every -e flag as a name → value map (later flags win). */
export function envFlagsToMap(values: readonly string[], env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const entry = parseEnvFlag(v, env);
    if (entry === undefined) continue;
    const eq = entry.indexOf('=');
    out[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return out;
}
