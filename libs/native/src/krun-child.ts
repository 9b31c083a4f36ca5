/**
 * Entry point of the process that becomes one libkrun VM:
 *
 *   node krun-child.js <config.json>        (fd 3: status pipe to the parent)
 *
 * krun_start_enter() takes over its calling process and exits it with the
 * workload's exit code, so every VM gets a process of its own. This script
 * makes the mounts the config lists (the parent runs it in a private mount
 * namespace, so they disappear with it), makes the krun_* calls, reports
 * "entering" on fd 3 and hands the process to libkrun. If anything fails
 * before that, it writes an "error" line on fd 3 and exits with
 * KRUN_CHILD_SETUP_FAILED_EXIT.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, lstatSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import koffi from 'koffi';
import { Libkrun, KRUN_LOG_LEVEL, KRUN_LOG_OPTION_NO_ENV, KRUN_LOG_STYLE_NEVER, KRUN_TSI_HIJACK_INET } from './libkrun.js';
import { LibkrunError } from './libkrun-error.js';
import {
  KRUN_CHILD_SETUP_FAILED_EXIT,
  KRUN_CHILD_STATUS_FD,
  type KrunChildConfig,
  type KrunChildMount,
  type KrunChildStatus,
} from './krun-child-config.js';

function report(status: KrunChildStatus): void {
  try {
    writeSync(KRUN_CHILD_STATUS_FD, `${JSON.stringify(status)}\n`);
  } catch {
    // No status pipe (run by hand): stderr is the only channel left.
    process.stderr.write(`${JSON.stringify(status)}\n`);
  }
}

function setupError(message: string, details: Record<string, unknown> = {}): LibkrunError {
  return new LibkrunError('MC_VM_LIBKRUN_SETUP_FAILED', message, details);
}

function readConfig(path: string | undefined): KrunChildConfig {
  if (!path) throw setupError('usage: krun-child <config.json>');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw setupError(`cannot read VM config ${path}: ${(err as Error).message}`, { path });
  }
  const c = raw as Partial<KrunChildConfig>;
  const need = (ok: boolean, field: string): void => {
    if (!ok) throw setupError(`VM config ${path}: field "${field}" is missing or has the wrong type`, { path, field });
  };
  need(typeof c.libkrunPath === 'string', 'libkrunPath');
  need(typeof c.vcpus === 'number', 'vcpus');
  need(typeof c.ramMib === 'number', 'ramMib');
  need(Array.isArray(c.mounts), 'mounts');
  need(typeof c.root === 'string', 'root');
  need(Array.isArray(c.virtiofs), 'virtiofs');
  if (c.exec !== undefined) {
    need(typeof c.exec === 'object' && c.exec !== null, 'exec');
    need(typeof c.exec.path === 'string', 'exec.path');
    need(Array.isArray(c.exec.args) && c.exec.args.every((a) => typeof a === 'string'), 'exec.args');
    need(Array.isArray(c.exec.env) && c.exec.env.every((a) => typeof a === 'string'), 'exec.env');
  }
  need(typeof c.network === 'object' && c.network !== null, 'network');
  need(typeof c.separateStdio === 'boolean', 'separateStdio');
  return c as KrunChildConfig;
}

/** Die with the supervisor: a crash of the parent must not leave a VM running. */
function tieLifetimeToParent(parentPid: number | undefined): void {
  if (parentPid === undefined || process.platform !== 'linux') return;
  const libc = koffi.load('libc.so.6');
  const prctl = libc.func('int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)');
  const PR_SET_PDEATHSIG = 1;
  const SIGKILL = 9;
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) !== 0) throw setupError('prctl(PR_SET_PDEATHSIG) failed');
  // The parent may have died before prctl took effect.
  if (process.ppid !== parentPid) throw setupError(`supervising process ${parentPid} is gone`, { parentPid });
}

/**
 * A volume's target lies inside the image, whose symlinks are untrusted: a
 * link such as /data -> /etc would make mkdir/mount act on the HOST's /etc.
 * Refuse any symlink on the way (checked after the overlay is mounted, before
 * the guest runs, so nothing can change it in between).
 */
function assertNoSymlinkBelow(root: string, target: string): void {
  const rel = relative(root, target);
  if (rel.startsWith('..') || isAbsolute(rel)) throw setupError(`mount target ${target} is outside the root ${root}`, { root, target });
  let cur = root;
  for (const part of rel.split(sep).filter(Boolean)) {
    cur = join(cur, part);
    let st;
    try {
      st = lstatSync(cur);
    } catch {
      return; // missing from here on: mkdir creates plain directories
    }
    if (st.isSymbolicLink()) {
      throw setupError(`volume target ${JSON.stringify('/' + rel)} crosses the symlink ${JSON.stringify('/' + relative(root, cur))} in the image; mount it at a real directory`, { root, target });
    }
    if (!st.isDirectory()) throw setupError(`volume target ${JSON.stringify('/' + rel)}: ${JSON.stringify('/' + relative(root, cur))} is not a directory in the image`, { root, target });
  }
}

function doMount(m: KrunChildMount, root: string): void {
  const run = (args: string[]): void => {
    try {
      execFileSync('mount', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
      throw setupError(`mount ${args.join(' ')} failed: ${stderr || (err as Error).message}`, { mount: m });
    }
  };
  if (m.kind === 'bind-file') {
    assertNoSymlinkBelow(root, dirname(m.target));
    mkdirSync(dirname(m.target), { recursive: true });
    try {
      // O_CREAT|O_EXCL never follows a symlink: an image symlink here fails instead of reaching the host.
      closeSync(openSync(m.target, 'wx', 0o644));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw setupError(`cannot create ${m.target}: ${(err as Error).message}`, { mount: m });
      if (!lstatSync(m.target).isFile()) {
        throw setupError(`${JSON.stringify('/' + relative(root, m.target))} in the image is not a regular file; refusing to mount over it`, { mount: m });
      }
    }
    run(['--bind', m.source, m.target]);
    if (m.readOnly) run(['-o', 'remount,bind,ro', m.target]);
    return;
  }
  if (m.kind === 'bind') assertNoSymlinkBelow(root, m.target);
  mkdirSync(m.target, { recursive: true });
  if (m.kind === 'overlay') {
    for (const opt of [m.lower, m.upper, m.work]) {
      // overlayfs splits its options on ',' and ':'; such paths cannot be expressed.
      if (/[,:\\]/.test(opt)) throw setupError(`overlay path ${JSON.stringify(opt)} contains ',', ':' or '\\'`, { mount: m });
    }
    mkdirSync(m.upper, { recursive: true });
    mkdirSync(m.work, { recursive: true });
    run(['-t', 'overlay', 'overlay', '-o', `lowerdir=${m.lower},upperdir=${m.upper},workdir=${m.work}`, m.target]);
  } else {
    run(['--bind', m.source, m.target]);
    if (m.readOnly) run(['-o', 'remount,bind,ro', m.target]);
  }
}

function main(): void {
  const config = readConfig(process.argv[2]);
  tieLifetimeToParent(config.parentPid);
  for (const m of config.mounts) doMount(m, config.root);

  const krun = Libkrun.load(config.libkrunPath);
  const calls: string[] = [];
  if (config.logFile !== undefined && krun.has('krun_init_log')) {
    // Keep libkrun's own messages out of the workload's stderr. The fd stays
    // open for the life of the process (the VMM writes to it).
    const fd = openSync(config.logFile, 'a', 0o600);
    krun.initLog(fd, config.logLevel ?? KRUN_LOG_LEVEL.ERROR, KRUN_LOG_STYLE_NEVER, KRUN_LOG_OPTION_NO_ENV);
  } else if (config.logLevel !== undefined) {
    krun.setLogLevel(config.logLevel);
  }
  const ctx = krun.createCtx();
  calls.push('krun_create_ctx');
  krun.setVmConfig(ctx, config.vcpus, config.ramMib);
  calls.push('krun_set_vm_config');
  krun.setRoot(ctx, config.root);
  calls.push('krun_set_root');
  for (const fs of config.virtiofs) {
    krun.addVirtiofs(ctx, fs.tag, fs.path);
    calls.push('krun_add_virtiofs');
  }
  if (config.network.mode === 'none') {
    // Without this libkrun adds a vsock with TSI, which lets guest sockets
    // connect out as this host process. Refuse to run rather than leak.
    if (!krun.has('krun_disable_implicit_vsock')) {
      throw setupError(`${krun.path} has no krun_disable_implicit_vsock: cannot run a VM without network access; upgrade libkrun`);
    }
    krun.disableImplicitVsock(ctx);
    calls.push('krun_disable_implicit_vsock');
  } else {
    if (krun.has('krun_disable_implicit_vsock') && krun.has('krun_add_vsock')) {
      // TSI for AF_INET only: no hijacking of guest AF_UNIX sockets.
      krun.disableImplicitVsock(ctx);
      krun.addVsock(ctx, KRUN_TSI_HIJACK_INET);
      calls.push('krun_disable_implicit_vsock', 'krun_add_vsock');
    }
    krun.setPortMap(ctx, config.network.portMap);
    calls.push('krun_set_port_map');
  }
  if (config.rlimits && config.rlimits.length > 0) {
    krun.setRlimits(ctx, config.rlimits);
    calls.push('krun_set_rlimits');
  }
  if (config.workdir !== undefined) {
    krun.setWorkdir(ctx, config.workdir);
    calls.push('krun_set_workdir');
  }
  if (config.exec) {
    krun.setExec(ctx, config.exec.path, config.exec.args, config.exec.env);
    calls.push('krun_set_exec');
  }
  // Separate stdout/stderr need krun_add_virtio_console_default: the implicit
  // console (kernel + init messages) then goes to the console file, and the
  // workload's stdio to our fds 0/1/2 (pipes: libkrun gives each its own port).
  // Older libkrun: the implicit console carries everything to our stdout.
  const separate = config.separateStdio && krun.has('krun_add_virtio_console_default');
  if (separate) {
    if (config.consoleOutput !== undefined && krun.has('krun_set_console_output')) {
      krun.setConsoleOutput(ctx, config.consoleOutput);
      calls.push('krun_set_console_output');
    }
    krun.addVirtioConsoleDefault(ctx, 0, 1, 2);
    calls.push('krun_add_virtio_console_default');
  }
  report({ event: 'configured', ctx, calls, separateStdio: separate });
  report({ event: 'entering', pid: process.pid });
  krun.startEnter(ctx); // returns only by throwing a setup error
}

try {
  main();
} catch (err) {
  if (err instanceof LibkrunError) report({ event: 'error', code: err.code, message: err.message, details: err.details });
  else report({ event: 'error', code: 'MC_VM_LIBKRUN_SETUP_FAILED', message: err instanceof Error ? err.message : String(err), details: {} });
  process.exit(KRUN_CHILD_SETUP_FAILED_EXIT);
}
