import { createRequire } from 'node:module';
import type * as Koffi from 'koffi';
import { describeErrno } from './errno-name.js';
import { LibkrunError } from './libkrun-error.js';

/**
 * koffi 3 bindings to the public libkrun C API (include/libkrun.h of
 * github.com/containers/libkrun, checked against the header at commit
 * 6ed74fac, 2026-06). Every krun_* returns int32_t: a context id or 0 on
 * success, a negative errno on failure; the wrappers below turn a negative
 * result into a LibkrunError naming the function and the errno.
 *
 * String arrays are C `const char *const x[]` terminated by NULL: the wrappers
 * take JS string arrays and append the terminator themselves. Strings cross as
 * UTF-8; a string containing NUL cannot be represented in C and is refused
 * before any call is made.
 *
 * Required symbols (present in every libkrun 1.x) must load or the library is
 * rejected; everything else is optional, so an older libkrun still loads and a
 * call to a missing function fails with MC_VM_LIBKRUN_SYMBOL_MISSING.
 */

/** The C prototypes we bind, by symbol name. */
const PROTOTYPES = {
  krun_set_log_level: 'int32_t krun_set_log_level(uint32_t level)',
  krun_init_log: 'int32_t krun_init_log(int target_fd, uint32_t level, uint32_t style, uint32_t options)',
  krun_create_ctx: 'int32_t krun_create_ctx()',
  krun_free_ctx: 'int32_t krun_free_ctx(uint32_t ctx_id)',
  krun_set_vm_config: 'int32_t krun_set_vm_config(uint32_t ctx_id, uint8_t num_vcpus, uint32_t ram_mib)',
  krun_set_root: 'int32_t krun_set_root(uint32_t ctx_id, const char *root_path)',
  krun_add_disk: 'int32_t krun_add_disk(uint32_t ctx_id, const char *block_id, const char *disk_path, bool read_only)',
  krun_add_virtiofs: 'int32_t krun_add_virtiofs(uint32_t ctx_id, const char *c_tag, const char *c_path)',
  krun_add_virtiofs3:
    'int32_t krun_add_virtiofs3(uint32_t ctx_id, const char *c_tag, const char *c_path, uint64_t shm_size, bool read_only)',
  krun_set_port_map: 'int32_t krun_set_port_map(uint32_t ctx_id, const char **port_map)',
  krun_set_rlimits: 'int32_t krun_set_rlimits(uint32_t ctx_id, const char **rlimits)',
  krun_set_workdir: 'int32_t krun_set_workdir(uint32_t ctx_id, const char *workdir_path)',
  krun_set_exec: 'int32_t krun_set_exec(uint32_t ctx_id, const char *exec_path, const char **argv, const char **envp)',
  krun_set_env: 'int32_t krun_set_env(uint32_t ctx_id, const char **envp)',
  krun_set_console_output: 'int32_t krun_set_console_output(uint32_t ctx_id, const char *c_filepath)',
  krun_add_virtio_console_default:
    'int32_t krun_add_virtio_console_default(uint32_t ctx_id, int input_fd, int output_fd, int err_fd)',
  krun_disable_implicit_vsock: 'int32_t krun_disable_implicit_vsock(uint32_t ctx_id)',
  krun_add_vsock: 'int32_t krun_add_vsock(uint32_t ctx_id, uint32_t tsi_features)',
  krun_add_vsock_port: 'int32_t krun_add_vsock_port(uint32_t ctx_id, uint32_t port, const char *c_filepath)',
  krun_set_net_mac: 'int32_t krun_set_net_mac(uint32_t ctx_id, const uint8_t *c_mac)',
  krun_set_passt_fd: 'int32_t krun_set_passt_fd(uint32_t ctx_id, int fd)',
  krun_setuid: 'int32_t krun_setuid(uint32_t ctx_id, uint32_t uid)',
  krun_setgid: 'int32_t krun_setgid(uint32_t ctx_id, uint32_t gid)',
  krun_get_max_vcpus: 'int32_t krun_get_max_vcpus()',
  krun_has_feature: 'int32_t krun_has_feature(uint64_t feature)',
  krun_get_shutdown_eventfd: 'int32_t krun_get_shutdown_eventfd(uint32_t ctx_id)',
  krun_start_enter: 'int32_t krun_start_enter(uint32_t ctx_id)',
} as const;

export type LibkrunFunctionName = keyof typeof PROTOTYPES;

/** Symbols every supported libkrun exports; without them the library is rejected. */
export const LIBKRUN_REQUIRED_SYMBOLS: readonly LibkrunFunctionName[] = [
  'krun_set_log_level',
  'krun_create_ctx',
  'krun_free_ctx',
  'krun_set_vm_config',
  'krun_set_root',
  'krun_set_workdir',
  'krun_set_exec',
  'krun_start_enter',
];

export const LIBKRUN_FUNCTIONS = Object.keys(PROTOTYPES) as LibkrunFunctionName[];

/** Constants from libkrun.h. */
export const KRUN_LOG_LEVEL = { OFF: 0, ERROR: 1, WARN: 2, INFO: 3, DEBUG: 4, TRACE: 5 } as const;
export const KRUN_LOG_STYLE_NEVER = 2;
export const KRUN_LOG_OPTION_NO_ENV = 1;
export const KRUN_TSI_HIJACK_INET = 1 << 0;
export const KRUN_TSI_HIJACK_UNIX = 1 << 1;
export const KRUN_FS_ROOT_TAG = '/dev/root';
/** Exit codes the VMM uses when the guest init fails before running the workload. */
export const KRUN_EXIT_CODES = { ENV_SETUP_FAILED: 125, EXEC_FAILED: 126, NOT_FOUND: 127 } as const;

type NativeFn = (...args: unknown[]) => number;

let koffiModule: typeof Koffi | undefined;
/**
 * koffi is loaded on first use, not at import: a host where its native module
 * cannot load still imports @monocore/native (and the engine), and the libkrun
 * probe reports why instead of the whole process failing to start.
 */
function koffi(): typeof Koffi {
  koffiModule ??= createRequire(import.meta.url)('koffi') as typeof Koffi;
  return koffiModule;
}

function checkString(fn: string, param: string, value: unknown, nullable = false): string | null {
  if (value === null && nullable) return null;
  if (typeof value !== 'string') {
    throw new LibkrunError('MC_VM_LIBKRUN_INVALID_ARGUMENT', `${fn}: ${param} must be a string, got ${typeof value}`, { fn, param });
  }
  if (value.includes('\0')) {
    throw new LibkrunError('MC_VM_LIBKRUN_INVALID_ARGUMENT', `${fn}: ${param} contains a NUL byte, which a C string cannot carry`, {
      fn,
      param,
    });
  }
  return value;
}

function checkArray(fn: string, param: string, value: readonly string[] | null, nullable: boolean): Array<string | null> | null {
  if (value === null) {
    if (nullable) return null;
    throw new LibkrunError('MC_VM_LIBKRUN_INVALID_ARGUMENT', `${fn}: ${param} must be an array of strings`, { fn, param });
  }
  if (!Array.isArray(value)) {
    throw new LibkrunError('MC_VM_LIBKRUN_INVALID_ARGUMENT', `${fn}: ${param} must be an array of strings`, { fn, param });
  }
  const out: Array<string | null> = value.map((v, i) => checkString(fn, `${param}[${i}]`, v));
  out.push(null); // the NULL terminator libkrun walks to
  return out;
}

function checkUint(fn: string, param: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new LibkrunError('MC_VM_LIBKRUN_INVALID_ARGUMENT', `${fn}: ${param} must be an integer in 0..${max}, got ${value}`, {
      fn,
      param,
      value,
    });
  }
  return value;
}

function checkFd(fn: string, param: string, value: number): number {
  if (!Number.isInteger(value) || value < -1 || value > 0x7fffffff) {
    throw new LibkrunError('MC_VM_LIBKRUN_INVALID_ARGUMENT', `${fn}: ${param} must be a file descriptor, got ${value}`, { fn, param });
  }
  return value;
}

const U32 = 0xffffffff;

/** A loaded libkrun. Create with {@link Libkrun.load} (or through probeLibkrun/loadLibkrun). */
export class Libkrun {
  readonly path: string;
  private readonly fns: Partial<Record<LibkrunFunctionName, NativeFn>>;

  private constructor(path: string, fns: Partial<Record<LibkrunFunctionName, NativeFn>>) {
    this.path = path;
    this.fns = fns;
  }

  /**
   * dlopen()s `path` (a file path or a name the dynamic loader resolves) and
   * binds the API. Throws MC_VM_LIBKRUN_NOT_FOUND when it cannot be loaded and
   * MC_VM_LIBKRUN_SYMBOL_MISSING when a required symbol is absent.
   */
  static load(path: string): Libkrun {
    let lib: ReturnType<typeof Koffi.load>;
    try {
      lib = koffi().load(path);
    } catch (err) {
      throw new LibkrunError('MC_VM_LIBKRUN_NOT_FOUND', `cannot load libkrun from ${path}: ${(err as Error).message}`, { path }, { cause: err });
    }
    const fns: Partial<Record<LibkrunFunctionName, NativeFn>> = {};
    const missing: string[] = [];
    for (const name of LIBKRUN_FUNCTIONS) {
      try {
        fns[name] = lib.func(PROTOTYPES[name]) as unknown as NativeFn;
      } catch {
        if (LIBKRUN_REQUIRED_SYMBOLS.includes(name)) missing.push(name);
      }
    }
    if (missing.length > 0) {
      throw new LibkrunError(
        'MC_VM_LIBKRUN_SYMBOL_MISSING',
        `${path} is not a usable libkrun: missing required symbol(s) ${missing.join(', ')}`,
        { path, missing },
      );
    }
    return new Libkrun(path, fns);
  }

  /** Whether this libkrun exports `fn` (optional symbols may be missing in older versions). */
  has(fn: LibkrunFunctionName): boolean {
    return this.fns[fn] !== undefined;
  }

  /** Names of the bound functions this library exports. */
  exported(): LibkrunFunctionName[] {
    return LIBKRUN_FUNCTIONS.filter((f) => this.has(f));
  }

  private raw(fn: LibkrunFunctionName, ...args: unknown[]): number {
    const f = this.fns[fn];
    if (!f) {
      throw new LibkrunError('MC_VM_LIBKRUN_SYMBOL_MISSING', `${fn} is not exported by ${this.path} (libkrun too old?)`, {
        fn,
        path: this.path,
      });
    }
    return f(...args);
  }

  /** Calls fn and maps a negative result to MC_VM_LIBKRUN_CALL_FAILED; returns the non-negative result. */
  private call(fn: LibkrunFunctionName, ...args: unknown[]): number {
    const rc = this.raw(fn, ...args);
    if (rc < 0) throw callFailed(fn, rc);
    return rc;
  }

  setLogLevel(level: number): void {
    this.call('krun_set_log_level', checkUint('krun_set_log_level', 'level', level, 5));
  }

  initLog(targetFd: number, level: number, style = 0, options = 0): void {
    const fn = 'krun_init_log';
    this.call(fn, checkFd(fn, 'target_fd', targetFd), checkUint(fn, 'level', level, 5), checkUint(fn, 'style', style, 2), checkUint(fn, 'options', options, U32));
  }

  /** Returns the new context id. */
  createCtx(): number {
    return this.call('krun_create_ctx');
  }

  freeCtx(ctx: number): void {
    this.call('krun_free_ctx', checkUint('krun_free_ctx', 'ctx_id', ctx, U32));
  }

  setVmConfig(ctx: number, numVcpus: number, ramMib: number): void {
    const fn = 'krun_set_vm_config';
    // num_vcpus is a uint8_t in C: refuse 0 and anything that would wrap.
    if (!Number.isInteger(numVcpus) || numVcpus < 1 || numVcpus > 255) {
      throw new LibkrunError('MC_VM_LIBKRUN_INVALID_ARGUMENT', `${fn}: num_vcpus must be an integer in 1..255, got ${numVcpus}`, {
        fn,
        param: 'num_vcpus',
        value: numVcpus,
      });
    }
    if (!Number.isInteger(ramMib) || ramMib < 1 || ramMib > U32) {
      throw new LibkrunError('MC_VM_LIBKRUN_INVALID_ARGUMENT', `${fn}: ram_mib must be a positive integer, got ${ramMib}`, {
        fn,
        param: 'ram_mib',
        value: ramMib,
      });
    }
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), numVcpus, ramMib);
  }

  setRoot(ctx: number, rootPath: string): void {
    const fn = 'krun_set_root';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkString(fn, 'root_path', rootPath));
  }

  addDisk(ctx: number, blockId: string, diskPath: string, readOnly: boolean): void {
    const fn = 'krun_add_disk';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkString(fn, 'block_id', blockId), checkString(fn, 'disk_path', diskPath), readOnly === true);
  }

  addVirtiofs(ctx: number, tag: string, hostPath: string): void {
    const fn = 'krun_add_virtiofs';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkString(fn, 'c_tag', tag), checkString(fn, 'c_path', hostPath));
  }

  /** krun_add_virtiofs3: with a DAX window size (bytes, 0 for none) and a read-only flag. */
  addVirtiofs3(ctx: number, tag: string, hostPath: string, shmSize: bigint, readOnly: boolean): void {
    const fn = 'krun_add_virtiofs3';
    if (typeof shmSize !== 'bigint' || shmSize < 0n || shmSize > 0xffffffffffffffffn) {
      throw new LibkrunError('MC_VM_LIBKRUN_INVALID_ARGUMENT', `${fn}: shm_size must be a uint64 bigint`, { fn, param: 'shm_size' });
    }
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkString(fn, 'c_tag', tag), checkString(fn, 'c_path', hostPath), shmSize, readOnly === true);
  }

  /**
   * "host_port:guest_port" entries. NULL (pass null) asks libkrun to expose
   * every listening guest port; an empty array exposes none.
   */
  setPortMap(ctx: number, portMap: readonly string[] | null): void {
    const fn = 'krun_set_port_map';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkArray(fn, 'port_map', portMap, true));
  }

  /** "RESOURCE=RLIM_CUR:RLIM_MAX" entries (e.g. "RLIMIT_NOFILE=1024:4096" or "7=1024:4096"). */
  setRlimits(ctx: number, rlimits: readonly string[]): void {
    const fn = 'krun_set_rlimits';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkArray(fn, 'rlimits', rlimits, false));
  }

  setWorkdir(ctx: number, workdir: string): void {
    const fn = 'krun_set_workdir';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkString(fn, 'workdir_path', workdir));
  }

  /**
   * Program, its arguments (argv[1..]: libkrun's init supplies argv[0]) and its
   * environment. envp null would make libkrun copy the HOST environment into
   * the guest, so it must be given explicitly unless that is really intended.
   */
  setExec(ctx: number, execPath: string, argv: readonly string[], envp: readonly string[] | null): void {
    const fn = 'krun_set_exec';
    this.call(
      fn,
      checkUint(fn, 'ctx_id', ctx, U32),
      checkString(fn, 'exec_path', execPath),
      checkArray(fn, 'argv', argv, false),
      checkArray(fn, 'envp', envp, true),
    );
  }

  /** envp null would copy the host environment into the guest (see setExec). */
  setEnv(ctx: number, envp: readonly string[] | null): void {
    const fn = 'krun_set_env';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkArray(fn, 'envp', envp, true));
  }

  setConsoleOutput(ctx: number, filePath: string): void {
    const fn = 'krun_set_console_output';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkString(fn, 'c_filepath', filePath));
  }

  /** Adds a virtio console whose non-TTY fds become the workload's stdin/stdout/stderr. */
  addVirtioConsoleDefault(ctx: number, inputFd: number, outputFd: number, errFd: number): void {
    const fn = 'krun_add_virtio_console_default';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkFd(fn, 'input_fd', inputFd), checkFd(fn, 'output_fd', outputFd), checkFd(fn, 'err_fd', errFd));
  }

  disableImplicitVsock(ctx: number): void {
    this.call('krun_disable_implicit_vsock', checkUint('krun_disable_implicit_vsock', 'ctx_id', ctx, U32));
  }

  /** tsiFeatures: bitmask of KRUN_TSI_HIJACK_INET / KRUN_TSI_HIJACK_UNIX (0 = no TSI). */
  addVsock(ctx: number, tsiFeatures: number): void {
    const fn = 'krun_add_vsock';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkUint(fn, 'tsi_features', tsiFeatures, 3));
  }

  addVsockPort(ctx: number, port: number, socketPath: string): void {
    const fn = 'krun_add_vsock_port';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkUint(fn, 'port', port, U32), checkString(fn, 'c_filepath', socketPath));
  }

  setNetMac(ctx: number, mac: Uint8Array): void {
    const fn = 'krun_set_net_mac';
    if (!(mac instanceof Uint8Array) || mac.length !== 6) {
      throw new LibkrunError('MC_VM_LIBKRUN_INVALID_ARGUMENT', `${fn}: c_mac must be 6 bytes`, { fn, param: 'c_mac' });
    }
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), mac);
  }

  setPasstFd(ctx: number, fd: number): void {
    const fn = 'krun_set_passt_fd';
    this.call(fn, checkUint(fn, 'ctx_id', ctx, U32), checkFd(fn, 'fd', fd));
  }

  setUid(ctx: number, uid: number): void {
    this.call('krun_setuid', checkUint('krun_setuid', 'ctx_id', ctx, U32), checkUint('krun_setuid', 'uid', uid, U32));
  }

  setGid(ctx: number, gid: number): void {
    this.call('krun_setgid', checkUint('krun_setgid', 'ctx_id', ctx, U32), checkUint('krun_setgid', 'gid', gid, U32));
  }

  getMaxVcpus(): number {
    return this.call('krun_get_max_vcpus');
  }

  /** true/false from krun_has_feature (KRUN_FEATURE_* constant). */
  hasFeature(feature: bigint): boolean {
    return this.call('krun_has_feature', feature) > 0;
  }

  /** Returns an eventfd that asks the guest to shut down orderly (only some libkrun builds support it). */
  getShutdownEventfd(ctx: number): number {
    return this.call('krun_get_shutdown_eventfd', checkUint('krun_get_shutdown_eventfd', 'ctx_id', ctx, U32));
  }

  /**
   * Hands the process to the VMM. Never returns when the VM starts: the
   * process exits with the workload's exit code (125/126/127 for init
   * failures). Returns only by throwing the setup error libkrun reported.
   * Blocks the calling thread: call it only in a process dedicated to one VM.
   */
  startEnter(ctx: number): never {
    const fn = 'krun_start_enter';
    const rc = this.raw(fn, checkUint(fn, 'ctx_id', ctx, U32));
    if (rc < 0) throw callFailed(fn, rc);
    throw new LibkrunError('MC_VM_LIBKRUN_CALL_FAILED', `${fn} returned ${rc} instead of taking over the process`, { fn, rc });
  }
}

function callFailed(fn: string, rc: number): LibkrunError {
  const errno = -rc;
  const { name, text } = describeErrno(errno);
  return new LibkrunError('MC_VM_LIBKRUN_CALL_FAILED', `${fn} failed: ${text}`, { fn, errno, errnoName: name ?? null });
}
