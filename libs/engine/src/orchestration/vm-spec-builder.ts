import type { ResolvedService } from '../config/index.js';
import { MonocoreError } from '../errors/index.js';
import { imageProcess } from '../oci/image-process.js';
import type { RuntimeConfig } from '../oci/runtime-config.js';
import type { VmNetwork, VmSpec } from '../vm/vm-spec.js';

/** The parts of an image the VM spec needs (ImageRecord.config of the oci domain). */
export interface ImageRuntime {
  rootfs: string;
  config: RuntimeConfig;
}

export interface BuildVmSpecInput {
  service: ResolvedService;
  /** The pulled image (the worker refuses a service without `base`: MC_ORCH_NO_IMAGE). */
  image?: ImageRuntime;
  /** Per-service state dir (writable layer, sockets). */
  stateDir: string;
  network: VmNetwork;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  bootTimeoutMs?: number;
  /** VM instance id (default: the service name). */
  id?: string;
}

/**
 * ResolvedService + pulled image + group network → VmSpec. The image-config
 * rules are Docker's, in their one home (`imageProcess`): `command` replaces the
 * image Entrypoint (and its Cmd), `args` replace the Cmd; the service's env wins
 * over the image's per key; workdir and user fall back to the image's.
 */
export function buildVmSpec(input: BuildVmSpecInput): VmSpec {
  const { service, image } = input;
  const proc = imageProcess(image?.config, {
    ...(service.command !== undefined ? { entrypoint: [service.command] } : {}),
    cmd: service.args,
    env: service.envs.map((e) => [e.key, e.value] as const),
    ...(service.workdir !== undefined ? { workdir: service.workdir } : {}),
  });
  const [command, ...args] = proc.argv;
  if (command === undefined || command === '') {
    throw new MonocoreError(
      'MC_ORCH_NO_COMMAND',
      `service "${service.name}": no command to run (set \`command\`, or use an image with Entrypoint/Cmd)`,
      { service: service.name },
    );
  }
  const spec: VmSpec = {
    id: input.id ?? service.name,
    rootfs: image?.rootfs ?? '',
    command,
    args,
    env: proc.env,
    workdir: proc.workdir,
    ...(proc.user !== undefined ? { user: proc.user } : {}),
    hostname: service.name,
    cpus: service.cpus,
    ramMib: service.ram,
    volumes: service.volumes.map((v) => ({ host: v.host, guest: v.guest })),
    ports: service.port ? [{ host: service.port.host, guest: service.port.guest }] : [],
    stateDir: input.stateDir,
    network: input.network,
  };
  if (input.stdout) spec.stdout = input.stdout;
  if (input.stderr) spec.stderr = input.stderr;
  if (input.bootTimeoutMs !== undefined) spec.bootTimeoutMs = input.bootTimeoutMs;
  if (service.disk !== undefined) spec.diskMib = service.disk;
  return spec;
}

/**
 * Addresses on a group's private segment: members sorted by name get
 * 10.88.0.2, .3, … (/24). Deterministic, so every member computes the same
 * peer table without coordination.
 */
export function groupNetwork(group: string, members: readonly string[], self: string, localOnly: boolean, allow?: readonly string[]): VmNetwork {
  const sorted = [...new Set([...members, self])].sort();
  if (sorted.length > 250) {
    throw new MonocoreError('MC_ORCH_NO_CAPACITY', `group "${group}" has more than 250 services (one /24 segment)`, { group });
  }
  const addr = (n: string): string => `10.88.0.${sorted.indexOf(n) + 2}`;
  const peers: Record<string, string> = {};
  for (const m of sorted) if (m !== self) peers[m] = addr(m);
  const net: VmNetwork = { mode: 'group', group, address: `${addr(self)}/24`, peers, localOnly };
  if (!localOnly && allow) net.allow = [...allow];
  return net;
}
