import { EgressAllowList } from './egress-allow-list.js';
import type { VmNetwork } from './vm-spec.js';

/**
 * A network with outbound access for one VM on its own (a sandbox, `monocore run
 * --net outbound`): a one-member group whose segment stays private, plus the way
 * out, limited to `allow` when given (DNS names, *.suffix, IPv4, CIDR; docs/NETWORK.md).
 * Throws MC_VM_EGRESS_ALLOW_INVALID naming `<field>[i]` for a bad list, so a REST
 * handler can answer 400 before anything starts. The backend's start() does the rest.
 */
export function outboundNetwork(key: string, allow?: readonly unknown[], field = 'network.allow'): VmNetwork {
  const net: VmNetwork = { mode: 'group', group: key, address: '10.88.0.2/24', peers: {}, localOnly: false };
  if (allow !== undefined) net.allow = EgressAllowList.parse(allow, field).toStrings();
  return net;
}
