import { SandboxParamsSchema, ServiceParamsSchema } from '@monocore/api-schemas';
import type { RelayTarget } from '@monocore/engine';

/** The two kinds of VM the exec and files routes reach: `/sandboxes/:id/…` and `/services/:name/…`. */
export const EXEC_TARGETS = [
  { kind: 'sandbox', prefix: '/sandboxes/:id', params: SandboxParamsSchema, tag: 'sandboxes' },
  { kind: 'service', prefix: '/services/:name', params: ServiceParamsSchema, tag: 'services' },
] as const;

export function targetOf(kind: 'sandbox' | 'service', params: unknown): RelayTarget {
  const p = params as { id?: string; name?: string };
  return kind === 'sandbox' ? { kind: 'sandbox', id: p.id! } : { kind: 'service', name: p.name! };
}
