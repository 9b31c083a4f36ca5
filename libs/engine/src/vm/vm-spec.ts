/**
 * Everything a hypervisor backend needs to boot one service. Built by the
 * orchestration layer (or `monocore run`, or `MicroVm.builder()`) from a
 * resolved service, its image and its group; backends never read config files.
 *
 * (Owned by the VM domain; extend it as the backends need, keeping it
 * backend-neutral.)
 */
export interface VmSpec {
  /** Unique, path/DNS-safe id of this VM instance (e.g. the service name). */
  id: string;
  /** Host directory of the image's unpacked root filesystem (read-only, shared by services). */
  rootfs: string;
  /** Program to execute (absolute path in the guest, or a name looked up in PATH); "" with `sandbox`. */
  command: string;
  /** Arguments, passed exactly as given (no shell). */
  args: string[];
  /** Environment as KEY=value strings, in order; later entries win. */
  env: string[];
  /** Guest working directory (default "/"). */
  workdir?: string;
  /**
   * User the command runs as: the OCI image config's `User` ("name", "uid",
   * "name:group", "uid:gid", "name:gid", "uid:group"), resolved by the guest
   * init against the image's /etc/passwd and /etc/group (numeric ids need no
   * entry). Unset or "" = root. An unknown name makes the command exit 125.
   */
  user?: string;
  /**
   * A sandbox: no command (`command` "" and `args` []); the VM runs only the
   * guest agent (docs/AGENT.md) until stop(). `started` resolves once the agent
   * is up; stop() ends the VM with exit code 0.
   */
  sandbox?: boolean;
  /**
   * Boot the kernel even when a template of this VM's shape could be restored (`--cold`;
   * docs/SNAPSHOTS.md). Templates apply to sandboxes without volumes or forwarded ports.
   */
  coldBoot?: boolean;
  /** Guest hostname (default: id). */
  hostname?: string;
  cpus: number;
  /** Guest RAM in MiB. */
  ramMib: number;
  /**
   * Size of the per-service writable disk in MiB (sparse; backend default 4096). Fixed
   * when the disk is created (first start); a full disk is ENOSPC inside the guest.
   */
  diskMib?: number;
  /** Host directories shared read-write into the guest. */
  volumes: Array<{ host: string; guest: string; readOnly?: boolean }>;
  /** TCP ports forwarded from the host's loopback (or bindAddress) into the guest. */
  ports: Array<{ host: number; guest: number; bindAddress?: string }>;
  /** Per-service state directory (writable layer, sockets, console log); created if missing. */
  stateDir: string;
  /**
   * The caller deletes the writable layer once the VM ends (`monocore run`): the guest skips
   * flushing it to the host after the command, which under TCG is ~40-50 ms of every run.
   */
  discardDiskOnExit?: boolean;
  /** Network attachment; 'none' gives the guest loopback only. */
  network: VmNetwork;
  /** Where the guest command's stdout/stderr go (kept separate, no kernel/init noise). */
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** Kill the guest if it has not reported its command started within this time. */
  bootTimeoutMs?: number;
  /** Resource limits for the guest command (setrlimit names without RLIMIT_, e.g. "nofile"); -1 = unlimited. */
  rlimits?: Array<{ resource: RlimitName; soft: number; hard: number }>;
}

/** Linux setrlimit resources, as named in ulimit/OCI (RLIMIT_NOFILE -> "nofile"). */
export type RlimitName =
  | 'cpu' | 'fsize' | 'data' | 'stack' | 'core' | 'rss' | 'nproc' | 'nofile'
  | 'memlock' | 'as' | 'locks' | 'sigpending' | 'msgqueue' | 'nice' | 'rtprio' | 'rttime';

export type VmNetwork =
  | { mode: 'none' }
  | {
      /** Member of a group network: an isolated L2 segment shared only by the group's VMs. */
      mode: 'group';
      /**
       * Segment key: every VM started by one backend instance with the same key shares one L2
       * segment. Scope it per deployment (e.g. "<deployment>/<group>") so equally named groups
       * of different deployments stay apart.
       */
      group: string;
      /** Guest address in CIDR form, e.g. "10.88.0.2/24" (private to the segment, never routed on the host). */
      address: string;
      /** Other members, name -> address, written to the guest's /etc/hosts. */
      peers: Record<string, string>;
      /** When true the guest gets no route out of the segment. */
      localOnly: boolean;
      /**
       * With localOnly false: the only destinations the guest may reach — DNS names,
       * `*.suffix` wildcards, IPv4 addresses, IPv4 CIDR ranges (egress-allow-list.ts).
       * Names resolve only through monocore's resolver. Absent: any public address.
       */
      allow?: string[];
    };

/** How a VM ended. */
export interface VmExit {
  /** The guest command's exit code (128+N when killed by signal N), or null when it never ran. */
  exitCode: number | null;
  /** Why it ended: the command exited, we stopped it, the watchdog fired, or the hypervisor died. */
  reason: 'exited' | 'stopped' | 'killed' | 'boot-timeout' | 'hypervisor-error';
  /** Human-readable detail, e.g. the console tail on a boot failure. */
  detail?: string;
}

/** The OCI runtime's PATH for a guest process whose env sets none. */
export const DEFAULT_GUEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
