import type { SandboxNetworkRequest } from '@monocore/api-schemas';
import { MonocoreError } from '../errors/index.js';
import { EgressAllowList } from '../vm/egress-allow-list.js';

/** A sandbox's way out as its record keeps it: the mode, and the allow-list in normal form when it has one. */
export interface SandboxNetwork {
  network: 'none' | 'outbound';
  allow?: string[];
}

/**
 * A create request's `network` ("none", "outbound" or the monocore.toml form
 * `{ outbound, allow }`) as the record keeps it. Checked before anything is
 * placed or stored: a bad entry is MC_VM_EGRESS_ALLOW_INVALID naming
 * `network.allow[i]` (EgressAllowList, the entries' one home), and `allow`
 * without `outbound: true` is refused as the config refuses it for a group.
 */
export function sandboxNetwork(requested: SandboxNetworkRequest | undefined): SandboxNetwork {
  if (requested === undefined || typeof requested === 'string') return { network: requested ?? 'none' };
  if (requested.allow === undefined) return { network: requested.outbound ? 'outbound' : 'none' };
  if (!requested.outbound) {
    throw new MonocoreError('MC_VM_EGRESS_ALLOW_INVALID', 'network.allow: allow needs outbound: true (network "outbound"): without a way out there is nothing to allow', {
      field: 'network.allow',
      issues: [{ path: 'network.allow', message: 'allow needs outbound: true' }],
    });
  }
  return { network: 'outbound', allow: EgressAllowList.parse(requested.allow, 'network.allow').toStrings() };
}
