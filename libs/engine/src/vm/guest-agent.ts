import type { Readable, Writable } from 'node:stream';
import type { MonocoreError } from '../errors/index.js';

/**
 * The host side of the guest agent (docs/AGENT.md): runs processes in a VM,
 * moves files in and out, checks the guest is alive, and re-identifies a VM
 * restored from a snapshot. One object per agent session (one connection to
 * the VM's `monocore.agent` port); get it from `VmHandle.agent()`.
 *
 * Everything the guest sends is treated as hostile: a malformed frame, data
 * beyond its credit or a guest that stops answering ends the session
 * (`closed` resolves, every pending call rejects with the same MonocoreError);
 * nothing here ever grows without bound or throws out of an event handler.
 */
export interface GuestAgent {
  /** What the agent reported in the handshake. */
  readonly info: AgentInfo;

  /**
   * Runs a command to completion and buffers its output (each stream capped
   * at `maxOutputBytes`, default 16 MiB; the rest is read and dropped, and
   * `truncated` says so). Spawn failures are exit codes (125 bad cwd/user,
   * 126 not executable, 127 not found), not rejections.
   */
  exec(request: Omit<ExecRequest, 'stdin'> & BufferedExecOptions): Promise<ExecResult>;

  /**
   * Starts a command and returns once the guest reports it started (or failed
   * to: then `exit` resolves at once with 125/126/127 and `spawnError`).
   * Output is streamed with back-pressure: an unread `stdout` stops the
   * guest process in write() once `windowBytes` are buffered.
   */
  spawn(request: ExecRequest): Promise<GuestProcess>;

  /** Streams a regular file out of the guest. Rejects MC_AGENT_FILE_NOT_FOUND when absent. */
  readFile(path: string, options?: { signal?: AbortSignal }): Promise<GuestFileRead>;

  /**
   * Streams data into a guest file atomically (temp file + rename, parents
   * created): when the source errors, `maxBytes` is exceeded
   * (MC_AGENT_FILE_TOO_LARGE), the signal aborts or the session ends, nothing
   * is left in the guest. A chunk of an iterable source is written or copied
   * before the next one is asked for (the relay reuses its memory then).
   */
  writeFile(path: string, data: FileSource, options?: WriteFileOptions): Promise<{ size: number }>;

  /** The file's metadata, or undefined when the path does not exist (follows symlinks). */
  stat(path: string): Promise<GuestFileInfo | undefined>;

  /** A tar stream (ustar, busybox) of the directory's contents, produced in the guest. */
  tarOut(dir: string, options?: { signal?: AbortSignal }): Promise<Readable>;

  /** Extracts a tar stream into the directory in the guest (created if missing); takes a chunk as writeFile does. */
  tarIn(dir: string, tar: FileSource, options?: { signal?: AbortSignal; maxBytes?: number }): Promise<void>;

  /** Signals any guest process by pid (e.g. a detached exec listed in `info.detached`). */
  signalPid(pid: number, signal: NodeJS.Signals | number): Promise<void>;

  /** One PING/PONG; resolves with the round trip in ms. The agent also pings on its own (liveness). */
  ping(options?: { timeoutMs?: number }): Promise<number>;

  /**
   * Gives the guest a fresh identity (after a snapshot restore or fork, or
   * any time): always sets the wall clock from the host and reseeds the
   * kernel's random pool with fresh host entropy; the rest only when given.
   */
  refresh(identity?: GuestIdentity): Promise<RefreshResult>;

  /** Resolves once when the session ends, with the reason (never rejects). */
  readonly closed: Promise<MonocoreError>;

  /** Ends the session from the host side (pending calls reject MC_AGENT_DISCONNECTED). Idempotent. */
  close(): void;
}

/** From HELLO_ACK. */
export interface AgentInfo {
  /** Negotiated protocol version (1). */
  protocol: number;
  /** The agent build (monocore version + source hash). */
  agentVersion: string;
  /** The guest kernel's boot id: the same after a snapshot restore, new after a reboot. */
  bootId: string;
  /** The agent's pid in the guest. */
  pid: number;
  /** Guest uptime in seconds when it answered. */
  uptimeS: number;
  /** How many sessions this agent process has served, this one included (>1: restored or reconnected). */
  sessions: number;
  /** Whether execs get a cgroup each (whole-tree kill); else process groups. */
  cgroups: boolean;
  /** Execs left running (or exited unobserved) by the previous session, e.g. at a snapshot. */
  detached: DetachedExec[];
  /** The agent's bulk lane (docs/AGENT.md "Bulk lane"), when it found one. */
  lane?: { slots: number; slotBytes: number };
}

export interface DetachedExec {
  /** Its channel in the previous session (meaningless now but for logs). */
  channel: number;
  /** Guest pid (`GuestAgent.signalPid` can end it). */
  pid: number;
  /** Exit code if it already ended, null while it runs. */
  exitCode: number | null;
}

export interface ExecRequest {
  /** argv[0] is looked up in the exec's PATH (OCI default when unset); no shell. */
  argv: string[];
  /**
   * Entries applied over the VM's default env (the spec's env, or the last
   * refresh's), later entries win. KEY=value strings, or a record.
   */
  env?: string[] | Record<string, string>;
  /** Start from an empty env instead of the defaults. */
  clearEnv?: boolean;
  /** Working directory (absolute; default: the VM's workdir). A missing one exits 125. */
  cwd?: string;
  /** OCI user string resolved against the guest's /etc/passwd (default: the VM's user). */
  user?: string;
  /** spawn(): give the process a stdin pipe (GuestProcess.stdin); else /dev/null. Default: true with a pty. */
  stdin?: boolean;
  /** A pseudo-terminal of this size: stdin/stdout/stderr go through it, output arrives on stdout. */
  pty?: { cols: number; rows: number };
  /** Kill the whole process tree after this long; the result says timedOut (exit code 137). */
  timeoutMs?: number;
  /** Kill what the command left in the background when it exits (default: they keep running). */
  killTreeOnExit?: boolean;
  /** Run an applet of the agent's own static busybox (argv[0] = applet) instead of the image's. */
  tool?: 'busybox';
  /** Per-stream window for stdout/stderr (default 256 KiB): host memory per stream is bounded by it. */
  windowBytes?: number;
  /** Aborting kills the tree (CANCEL); exec() then resolves with the exit the guest reports. */
  signal?: AbortSignal;
}

export interface BufferedExecOptions {
  /** Written to the process's stdin, which is then closed (default: stdin is /dev/null). */
  stdin?: string | Uint8Array;
  /** Cap per stream (default 16 MiB); beyond it output is read and dropped. */
  maxOutputBytes?: number;
}

export interface ExecExit {
  /** The exit status, or 128+N for signal N; 125/126/127 when it could not be started. */
  exitCode: number;
  /** The signal that ended it, or null. */
  signal: number | null;
  /** The timeout (or a cancel) killed the tree. */
  timedOut: boolean;
  /** Why it could not start (cwd, user, exec error), when it could not. */
  spawnError?: string;
}

export interface ExecResult extends ExecExit {
  stdout: Buffer;
  stderr: Buffer;
  truncated: { stdout: boolean; stderr: boolean };
  durationMs: number;
}

export interface GuestProcess {
  /** Guest pid of the main process. */
  readonly pid: number;
  /** Output; a consumer that stops reading back-pressures the guest process. */
  readonly stdout: Readable;
  /** Empty (ends at once) with a pty: the terminal merges it into stdout. */
  readonly stderr: Readable;
  /** The process's stdin (end() closes it), or null without `stdin: true`/pty. */
  readonly stdin: Writable | null;
  /** Resolves once, after every byte of stdout/stderr was delivered to the streams. */
  readonly exit: Promise<ExecExit>;
  /** Signal the main process (default), its process group, or every process of the exec. */
  signal(signal: NodeJS.Signals | number, target?: 'process' | 'group' | 'tree'): Promise<void>;
  /** New terminal size (pty only). */
  resize(cols: number, rows: number): Promise<void>;
  /** Kill the whole tree (SIGKILL); `exit` then resolves. */
  kill(): Promise<void>;
}

export type FileSource = Uint8Array | string | AsyncIterable<Uint8Array | string> | NodeJS.ReadableStream;

export interface WriteFileOptions {
  /** Permission bits (default 0o644); setuid/setgid/sticky allowed. */
  mode?: number;
  /** Owner, an OCI user string ("app", "1000:1000", …) resolved in the guest (default root). */
  owner?: string;
  /** Create missing parent directories (default true). */
  parents?: boolean;
  /** Refuse (and leave nothing) when the data is larger: MC_AGENT_FILE_TOO_LARGE. */
  maxBytes?: number;
  signal?: AbortSignal;
}

export interface GuestFileInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}

export interface GuestFileRead {
  info: GuestFileInfo;
  /** The bytes; back-pressured (windowed) like exec output. */
  body: Readable;
}

export interface GuestIdentity {
  /** New hostname: sethostname, /etc/hostname, the 127.0.1.1 line of /etc/hosts. */
  hostname?: string;
  /** Replaces the default env of later execs (KEY=value). */
  env?: string[];
  /** Replaces the default working directory of later execs (absolute). */
  workdir?: string;
  /** Replaces the default user of later execs (OCI user string; "" = root). */
  user?: string;
  /** Wall clock to set (default: the host's now at send time). */
  clock?: Date;
  /** Entropy to mix in (default: 64 fresh bytes from the host's CSPRNG). */
  entropy?: Uint8Array;
  network?: {
    /** Per NIC, found by its current MAC. */
    interfaces: Array<{ mac: string; newMac?: string; cidr: string; gateway?: string }>;
    /** Replaces the extra /etc/hosts lines ("<ip>\t<name>"). */
    hosts?: string[];
    /** Replaces /etc/resolv.conf's nameservers. */
    dns?: string[];
  };
}

export interface RefreshResult {
  /** Bits of entropy credited to the guest kernel's pool. */
  entropyBits: number;
  /** How far the guest clock jumped (ms, guest now - guest before). */
  clockStepMs: number;
}
