import { imageProcess } from '../oci/image-process.js';
import type { ImageRuntime } from '../orchestration/vm-spec-builder.js';
import { outboundNetwork } from '../vm/outbound-network.js';
import type { VmNetwork, VmSpec } from '../vm/vm-spec.js';
import type { SandboxRecord } from './sandbox-record.js';

/**
 * A sandbox's VM: no command (the guest agent in sandbox mode, docs/AGENT.md),
 * the image's Env/WorkingDir/User under the sandbox's own (`imageProcess`, the
 * same rules as services and `monocore run`) as the defaults of every exec.
 */
export function buildSandboxVmSpec(rec: SandboxRecord, image: ImageRuntime, stateDir: string): VmSpec {
  const proc = imageProcess(image.config, {
    env: Object.entries(rec.env),
    ...(rec.workdir !== undefined ? { workdir: rec.workdir } : {}),
    ...(rec.user !== undefined ? { user: rec.user } : {}),
  });
  // Outbound is the same one-member group as `monocore run --net outbound`, limited to the record's allow-list.
  const network: VmNetwork = rec.network === 'outbound' ? outboundNetwork(rec.id, rec.allow) : { mode: 'none' };
  return {
    id: rec.id,
    rootfs: image.rootfs,
    command: '',
    args: [],
    sandbox: true,
    env: proc.env,
    workdir: proc.workdir,
    ...(proc.user !== undefined ? { user: proc.user } : {}),
    hostname: rec.id,
    cpus: rec.cpus,
    ramMib: rec.ramMib,
    diskMib: rec.diskMib,
    volumes: [],
    ports: [],
    stateDir,
    network,
    ...(rec.cold ? { coldBoot: true } : {}),
  };
}
