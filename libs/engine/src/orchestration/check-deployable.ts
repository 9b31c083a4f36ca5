import { MonocoreError } from '../errors/index.js';
import type { ResolvedService } from '../config/index.js';

/**
 * Refuses, at /up time, services that are valid config but that no worker can
 * boot yet — so the caller gets one clear error naming every offender instead
 * of services that go `failed` one by one on a worker minutes later.
 *
 * - every VM boots an OCI image: a service needs `base`;
 * - outbound networking (`local_only = false`) is not offered: no backend has a
 *   way out that cannot also reach the host (docs/NETWORK.md).
 */
export function checkDeployable(services: readonly ResolvedService[]): void {
  const noImage = services.filter((s) => s.image === undefined).map((s) => s.name);
  if (noImage.length > 0) {
    throw new MonocoreError(
      'MC_ORCH_NO_IMAGE',
      `${noImage.map((n) => `service "${n}"`).join(', ')} ${noImage.length === 1 ? 'has' : 'have'} no base image: ` +
        'every service boots an OCI image in its microVM (set base = "IMAGE")',
      { services: noImage },
    );
  }
  const outbound = [...new Set(services.filter((s) => s.group !== undefined && !s.localOnly).map((s) => s.group!))];
  if (outbound.length > 0) {
    throw new MonocoreError(
      'MC_VM_NETWORK_UNSUPPORTED',
      `${outbound.map((g) => `group "${g}"`).join(', ')}: local_only = false (outbound network access) is not supported yet — ` +
        'no backend can give a guest a way out that cannot also reach the host (docs/NETWORK.md); set local_only = true',
      { groups: outbound },
    );
  }
}
