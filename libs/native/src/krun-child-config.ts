/**
 * What the parent (the engine's LibkrunBackend) hands to krun-child.js, as a
 * JSON file whose path is the child's first argument, and the status lines the
 * child writes back on fd 3. Both sides import these types; the child
 * re-validates the file because it crosses a process boundary.
 */

/** A mount made in the child's private mount namespace before the VM starts. */
export type KrunChildMount =
  /** Per-service copy-on-write root: the image rootfs (lower) under a writable upper dir. */
  | { kind: 'overlay'; lower: string; upper: string; work: string; target: string }
  /** A host directory shown inside the root (a volume). */
  | { kind: 'bind'; source: string; target: string; readOnly: boolean }
  /** A host file shown inside the root (e.g. libkrun's /.krun_config.json); the mount point is created as an empty file. */
  | { kind: 'bind-file'; source: string; target: string; readOnly: boolean };

export interface KrunChildConfig {
  /** The libkrun the parent probed; the child loads the same file. */
  libkrunPath: string;
  /** krun_set_log_level (0 off .. 5 trace); omitted = leave libkrun's default. */
  logLevel?: number;
  /** Where libkrun logs (krun_init_log, when exported); else its default, stderr. */
  logFile?: string;
  vcpus: number;
  ramMib: number;
  /** Made in order, in the child's private mount namespace (Linux); they vanish with the child. */
  mounts: KrunChildMount[];
  /** krun_set_root: the directory the guest sees as / (after the mounts above). */
  root: string;
  /** Extra krun_add_virtiofs devices (tag -> host path). */
  virtiofs: Array<{ tag: string; path: string }>;
  /**
   * krun_set_exec: program, argv[1..] and the complete guest environment.
   * Omitted when the command travels in a /.krun_config.json instead (libkrun's
   * init reads argv/env/cwd from it when no KRUN_INIT is set); then the
   * mounts put that file in the root.
   */
  exec?: { path: string; args: string[]; env: string[] };
  workdir?: string;
  /** krun_set_rlimits entries, "RESOURCE=CUR:MAX". */
  rlimits?: string[];
  /**
   * 'none': no network device and no TSI (krun_disable_implicit_vsock).
   * 'tsi': libkrun's transparent socket impersonation for AF_INET only, with
   * portMap published (krun_set_port_map).
   */
  network: { mode: 'none' } | { mode: 'tsi'; portMap: string[] };
  /** krun_set_console_output: kernel and init console (not the workload's stdio when separate consoles exist). */
  consoleOutput?: string;
  /**
   * When true and libkrun has krun_add_virtio_console_default, the workload's
   * stdout/stderr go to the child's fd 1 and 2 separately (stdin is fd 0).
   */
  separateStdio: boolean;
  /** pid of the supervising process: the child dies with it (PR_SET_PDEATHSIG). */
  parentPid?: number;
}

/** One JSON line per event on fd 3, from the child to the parent. */
export type KrunChildStatus =
  | { event: 'configured'; ctx: number; calls: string[]; separateStdio: boolean }
  | { event: 'entering'; pid: number }
  | { event: 'error'; code: string; message: string; details: Record<string, unknown> };

/** Exit code of krun-child when setup fails before the VM starts (the fd 3 'error' line says why). */
export const KRUN_CHILD_SETUP_FAILED_EXIT = 120;

/** The fd the child writes status lines to. */
export const KRUN_CHILD_STATUS_FD = 3;
