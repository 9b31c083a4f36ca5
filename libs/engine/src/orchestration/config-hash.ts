import { createHash } from 'node:crypto';

/** JSON with object keys sorted, so equal configs hash equally whatever their key order. */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
}

/**
 * Hash of what a running VM depends on (a ResolvedService). `up` restarts a running service only
 * when this changes. depends_on is excluded: rewiring dependencies does not
 * change what runs in the VM.
 */
export function configHash(resolved: { dependsOn?: unknown } & Record<string, unknown>): string {
  const { dependsOn: _ignored, ...rest } = resolved;
  // resolveService builds objects in a fixed key order, so plain JSON is stable
  // and much cheaper than stableStringify on a 200-service request.
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0, 16);
}
