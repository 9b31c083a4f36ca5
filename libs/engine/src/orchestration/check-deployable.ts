import { MonocoreError } from '../errors/index.js';
import type { ResolvedService } from '../config/index.js';

/**
 * Refuses, at /up time, services that are valid config but that no worker can
 * boot yet — so the caller gets one clear error naming every offender instead
 * of services that go `failed` one by one on a worker minutes later.
 *
 * - every VM boots an OCI image: a service needs `base`.
 *
 * Outbound access (`local_only = false`) is not checked here: whether a host can
 * give it (root, passt, nftables) is known only on the worker, which fails the
 * service with MC_VM_NETWORK_UNSUPPORTED naming what is missing.
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
}
