// Tests of the koffi libkrun binding (@monocore/native) against the STUB
// libkrun built from stub-libkrun.c — NOT the real libkrun, which cannot be
// installed on these machines. The stub records every call with every
// argument, so these tests prove what crosses the JS -> C boundary.
import { test, describe, before, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Libkrun,
  LibkrunError,
  probeLibkrun,
  loadLibkrun,
  libkrunCandidates,
  krunChildEntry,
  KRUN_CHILD_SETUP_FAILED_EXIT,
  type KrunChildConfig,
  type KrunChildStatus,
} from '@monocore/native';
import { buildStubLibkrun, readStubRecord, cQuote, cArray } from './stub-libkrun.js';

const work = mkdtempSync(join(tmpdir(), 'mc-libkrun-binding-'));
let stub: { full: string; minimal: string };
let record: string;
let n = 0;

function newRecord(): string {
  record = join(work, `record-${++n}.txt`);
  process.env.STUB_LIBKRUN_RECORD = record;
  return record;
}

const TRICKY = ['plain', 'with space', 'dq"uote', "sq'uote", 'ünïcödé ✓ 日本', '', 'line\nbreak\ttab', 'back\\slash', '$HOME `x` ;|&'];

before(() => {
  stub = buildStubLibkrun();
});

beforeEach(() => {
  delete process.env.STUB_LIBKRUN_FAIL;
  newRecord();
});

describe('libkrun binding against the STUB libkrun', () => {
  test('stub libkrun: strings cross the boundary byte for byte (spaces, quotes, unicode, empty, newlines)', () => {
    const krun = Libkrun.load(stub.full);
    const ctx = krun.createCtx();
    for (const s of TRICKY) krun.setRoot(ctx, s);
    krun.setWorkdir(ctx, '/srv/my app');
    krun.setConsoleOutput(ctx, '/tmp/console ✓.log');
    krun.addVirtiofs(ctx, 'vol0', '/data/a b');
    const lines = readStubRecord(record);
    assert.deepEqual(lines, [
      `krun_create_ctx(=> ${ctx})`,
      ...TRICKY.map((s) => `krun_set_root(ctx_id=${ctx}, root_path=${cQuote(s)})`),
      `krun_set_workdir(ctx_id=${ctx}, workdir_path="/srv/my app")`,
      `krun_set_console_output(ctx_id=${ctx}, c_filepath="/tmp/console \\xe2\\x9c\\x93.log")`,
      `krun_add_virtiofs(ctx_id=${ctx}, c_tag="vol0", c_path="/data/a b")`,
    ]);
  });

  test('stub libkrun: argv/envp/port map/rlimits arrive element by element with their NULL terminator', () => {
    const krun = Libkrun.load(stub.full);
    const ctx = krun.createCtx();
    const env = ['A=1', 'EMPTY=', 'SPACE=a b', 'Q="x"', 'U=ü', 'NL=a\nb'];
    krun.setExec(ctx, '/bin/prog name', TRICKY, env);
    krun.setExec(ctx, '/bin/true', [], []);
    krun.setExec(ctx, '/bin/true', [''], null);
    krun.setEnv(ctx, env);
    krun.setPortMap(ctx, ['8080:80', '18443:443']);
    krun.setPortMap(ctx, []);
    krun.setPortMap(ctx, null);
    krun.setRlimits(ctx, ['RLIMIT_NOFILE=1024:4096', '6=100:200']);
    const big = Array.from({ length: 300 }, (_, i) => `arg-${i}`);
    krun.setExec(ctx, '/bin/echo', big, []);
    const lines = readStubRecord(record).slice(1);
    assert.deepEqual(lines, [
      `krun_set_exec(ctx_id=${ctx}, exec_path="/bin/prog name", argv=${cArray(TRICKY)}, envp=${cArray(env)})`,
      `krun_set_exec(ctx_id=${ctx}, exec_path="/bin/true", argv=[NULL], envp=[NULL])`,
      `krun_set_exec(ctx_id=${ctx}, exec_path="/bin/true", argv=["", NULL], envp=NULL)`,
      `krun_set_env(ctx_id=${ctx}, envp=${cArray(env)})`,
      `krun_set_port_map(ctx_id=${ctx}, port_map=["8080:80", "18443:443", NULL])`,
      `krun_set_port_map(ctx_id=${ctx}, port_map=[NULL])`,
      `krun_set_port_map(ctx_id=${ctx}, port_map=NULL)`,
      `krun_set_rlimits(ctx_id=${ctx}, rlimits=["RLIMIT_NOFILE=1024:4096", "6=100:200", NULL])`,
      `krun_set_exec(ctx_id=${ctx}, exec_path="/bin/echo", argv=${cArray(big)}, envp=[NULL])`,
    ]);
  });

  test('stub libkrun: integers cross intact (uint8 vcpus, uint32 ram and ctx ids, bools, fds)', () => {
    process.env.STUB_LIBKRUN_CTX_BASE = '2147483000';
    try {
      // The stub keeps its context counter once initialised: load a copy at another
      // path so the dynamic loader gives us a fresh instance that reads the new base.
      const copy = join(work, 'libkrun-ctxbase.so');
      copyFileSync(stub.full, copy);
      const krun = Libkrun.load(copy);
      const ctx = krun.createCtx();
      assert.equal(ctx, 2147483000);
      krun.setVmConfig(ctx, 255, 4294967295);
      krun.setVmConfig(ctx, 1, 1);
      krun.addDisk(ctx, 'data', '/d.img', true);
      krun.addVirtiofs3(ctx, 'big', '/x', 0xffffffffffffffffn, false);
      krun.addVirtioConsoleDefault(ctx, 0, 1, 2);
      krun.addVsock(ctx, 1);
      krun.setUid(ctx, 4294967294);
      krun.setNetMac(ctx, Uint8Array.from([0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xff]));
      const lines = readStubRecord(record).slice(1);
      assert.deepEqual(lines, [
        `krun_set_vm_config(ctx_id=${ctx}, num_vcpus=255, ram_mib=4294967295)`,
        `krun_set_vm_config(ctx_id=${ctx}, num_vcpus=1, ram_mib=1)`,
        `krun_add_disk(ctx_id=${ctx}, block_id="data", disk_path="/d.img", read_only=true)`,
        `krun_add_virtiofs3(ctx_id=${ctx}, c_tag="big", c_path="/x", shm_size=18446744073709551615, read_only=false)`,
        `krun_add_virtio_console_default(ctx_id=${ctx}, input_fd=0, output_fd=1, err_fd=2)`,
        `krun_add_vsock(ctx_id=${ctx}, tsi_features=1)`,
        `krun_setuid(ctx_id=${ctx}, uid=4294967294)`,
        `krun_set_net_mac(ctx_id=${ctx}, c_mac=5a:94:ef:e4:0c:ff)`,
      ]);
    } finally {
      delete process.env.STUB_LIBKRUN_CTX_BASE;
    }
  });

  test('stub libkrun: values C cannot carry are refused before any call (NUL byte, vcpus 0/256, negative ram)', () => {
    const krun = Libkrun.load(stub.full);
    const ctx = krun.createCtx();
    const invalid = (fn: () => void, re: RegExp): void =>
      assert.throws(fn, (err: unknown) => err instanceof LibkrunError && err.code === 'MC_VM_LIBKRUN_INVALID_ARGUMENT' && re.test(err.message));
    invalid(() => krun.setRoot(ctx, 'a\0b'), /krun_set_root: root_path contains a NUL byte/);
    invalid(() => krun.setExec(ctx, '/bin/x', ['ok', 'b\0d'], []), /krun_set_exec: argv\[1\] contains a NUL byte/);
    invalid(() => krun.setExec(ctx, '/bin/x', [], ['A=\0']), /envp\[0\]/);
    invalid(() => krun.setVmConfig(ctx, 0, 128), /num_vcpus must be an integer in 1\.\.255, got 0/);
    invalid(() => krun.setVmConfig(ctx, 256, 128), /got 256/);
    invalid(() => krun.setVmConfig(ctx, 1, -5), /ram_mib must be a positive integer, got -5/);
    invalid(() => krun.setVmConfig(ctx, 1.5, 128), /got 1.5/);
    // Nothing but krun_create_ctx reached the library.
    assert.deepEqual(readStubRecord(record), [`krun_create_ctx(=> ${ctx})`]);
  });

  test('stub libkrun: a negative errno becomes a readable MC_VM_LIBKRUN_CALL_FAILED error', () => {
    const krun = Libkrun.load(stub.full);
    const ctx = krun.createCtx();
    process.env.STUB_LIBKRUN_FAIL = 'krun_set_root:-2,krun_set_vm_config:-22,krun_set_port_map:-95,krun_set_exec:-4242';
    const failed = (fn: () => void, message: string, fnName: string, errno: number): void =>
      assert.throws(fn, (err: unknown) => {
        assert.ok(err instanceof LibkrunError);
        assert.equal(err.code, 'MC_VM_LIBKRUN_CALL_FAILED');
        assert.equal(err.message, message);
        assert.equal(err.details.fn, fnName);
        assert.equal(err.details.errno, errno);
        return true;
      });
    failed(() => krun.setRoot(ctx, '/nope'), 'krun_set_root failed: No such file or directory (ENOENT)', 'krun_set_root', 2);
    failed(() => krun.setVmConfig(ctx, 2, 512), 'krun_set_vm_config failed: Invalid argument (EINVAL)', 'krun_set_vm_config', 22);
    failed(() => krun.setPortMap(ctx, ['1:2']), 'krun_set_port_map failed: Operation not supported on socket (ENOTSUP)', 'krun_set_port_map', 95);
    failed(() => krun.setExec(ctx, '/x', [], []), 'krun_set_exec failed: errno 4242', 'krun_set_exec', 4242);
    // Calls that were not told to fail still succeed.
    krun.setWorkdir(ctx, '/');
    process.env.STUB_LIBKRUN_FAIL = 'krun_create_ctx:-12';
    failed(() => krun.createCtx(), 'krun_create_ctx failed: Not enough memory (ENOMEM)', 'krun_create_ctx', 12);
  });

  test('stub libkrun (minimal, like an old libkrun): optional symbols load leniently; calling one says it is missing', () => {
    const krun = Libkrun.load(stub.minimal);
    assert.equal(krun.has('krun_set_root'), true);
    assert.equal(krun.has('krun_add_virtiofs'), false);
    assert.equal(krun.has('krun_disable_implicit_vsock'), false);
    const ctx = krun.createCtx();
    assert.throws(
      () => krun.addVirtiofs(ctx, 't', '/p'),
      (err: unknown) =>
        err instanceof LibkrunError && err.code === 'MC_VM_LIBKRUN_SYMBOL_MISSING' && /krun_add_virtiofs is not exported by .*libkrun-minimal\.so/.test(err.message),
    );
    assert.deepEqual(krun.exported().sort(), ['krun_create_ctx', 'krun_free_ctx', 'krun_set_exec', 'krun_set_log_level', 'krun_set_root', 'krun_set_vm_config', 'krun_set_workdir', 'krun_start_enter']);
  });
});

describe('libkrun discovery', () => {
  test('MONOCORE_LIBKRUN_PATH pointing nowhere: unavailable with the path and the reason', () => {
    const probe = probeLibkrun({ MONOCORE_LIBKRUN_PATH: '/nonexistent/dir/libkrun.so.1' });
    assert.equal(probe.available, false);
    assert.ok(!probe.available);
    assert.match(probe.reason, /^MONOCORE_LIBKRUN_PATH=\/nonexistent\/dir\/libkrun\.so\.1: cannot load libkrun from .*\(file does not exist\)$/);
    assert.throws(() => loadLibkrun({ MONOCORE_LIBKRUN_PATH: '/nonexistent/dir/libkrun.so.1' }), (err: unknown) => err instanceof LibkrunError && err.code === 'MC_VM_LIBKRUN_NOT_FOUND');
  });

  test('a shared library that is not libkrun (libc) is rejected, naming the missing symbols', () => {
    const probe = probeLibkrun({ MONOCORE_LIBKRUN_PATH: 'libc.so.6' });
    assert.ok(!probe.available);
    assert.match(probe.reason, /libc\.so\.6 is not a usable libkrun: missing required symbol\(s\) krun_set_log_level, krun_create_ctx/);
  });

  test('stub libkrun through MONOCORE_LIBKRUN_PATH: available, with the symbols it exports', () => {
    const probe = probeLibkrun({ MONOCORE_LIBKRUN_PATH: stub.full });
    assert.ok(probe.available);
    assert.equal(probe.path, stub.full);
    assert.ok(probe.exported.includes('krun_add_virtiofs'));
    assert.ok(probe.exported.includes('krun_start_enter'));
  });

  test('default search: candidates cover the loader names, system dirs and Homebrew; absence is explained', () => {
    const linux = libkrunCandidates('linux', 'x64');
    for (const c of ['libkrun.so.1', 'libkrun.so', '/usr/lib64/libkrun.so.1', '/usr/local/lib/libkrun.so.1', '/usr/lib/x86_64-linux-gnu/libkrun.so.1']) {
      assert.ok(linux.includes(c), c);
    }
    const mac = libkrunCandidates('darwin', 'arm64');
    assert.ok(mac.includes('/opt/homebrew/lib/libkrun.dylib'));
    assert.ok(mac.includes('/usr/local/lib/libkrun.dylib'));
    const probe = probeLibkrun({});
    if (probe.available) {
      // A real libkrun is installed on this host: it must be one of the candidates.
      assert.ok(libkrunCandidates().includes(probe.path), probe.path);
    } else {
      assert.match(probe.reason, /^libkrun not found \(looked for libkrun\.so\.1, libkrun\.so, .*\); .* or set MONOCORE_LIBKRUN_PATH to its path$/);
    }
  });
});

interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  status: KrunChildStatus[];
  stdout: string;
  stderr: string;
}

/** Runs krun-child.js with `config` and the stub's env; collects fd 3 status lines. */
function runChild(config: KrunChildConfig, env: Record<string, string>): Promise<ChildRun> {
  const cfgPath = join(work, `child-${++n}.json`);
  writeFileSync(cfgPath, JSON.stringify(config));
  const child = spawn(process.execPath, [krunChildEntry(), cfgPath], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stdout = '';
  let stderr = '';
  let statusText = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (statusText += d.toString()));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      const status = statusText.split('\n').filter(Boolean).map((l) => JSON.parse(l) as KrunChildStatus);
      resolve({ code, signal, status, stdout, stderr });
    });
  });
}

function childConfig(over: Partial<KrunChildConfig> = {}): KrunChildConfig {
  return {
    libkrunPath: stub.full,
    vcpus: 2,
    ramMib: 256,
    mounts: [],
    root: work,
    virtiofs: [],
    exec: { path: '/bin/sh', args: ['-c', 'exit 0'], env: ['PATH=/bin'] },
    network: { mode: 'none' },
    separateStdio: true,
    ...over,
  };
}

describe('krun-child process against the STUB libkrun', () => {
  for (const exitCode of [0, 1, 7, 125, 126, 127, 255]) {
    test(`stub libkrun: krun_start_enter exiting with ${exitCode} ends the child with ${exitCode}`, async () => {
      const rec = newRecord();
      const run = await runChild(childConfig(), { STUB_LIBKRUN_ENTER: `exit:${exitCode}` });
      assert.equal(run.code, exitCode, run.stderr);
      assert.deepEqual(
        run.status.map((s) => s.event),
        ['configured', 'entering'],
      );
      assert.equal(readStubRecord(rec).at(-1), `krun_start_enter(ctx_id=1, mode="exit:${exitCode}")`);
    });
  }

  test('stub libkrun: the child makes every call in order, then hands over the process', async () => {
    const rec = newRecord();
    const run = await runChild(
      childConfig({
        logLevel: 2,
        workdir: '/work dir',
        rlimits: ['RLIMIT_NOFILE=64:128'],
        virtiofs: [{ tag: 'mc-vol-0', path: '/host/vol' }],
        network: { mode: 'tsi', portMap: ['18080:8080'] },
        consoleOutput: join(work, 'console.log'),
        exec: { path: '/bin/echo', args: ['a b', '', 'ü'], env: ['K=v w'] },
      }),
      { STUB_LIBKRUN_ENTER: 'exit:3', STUB_LIBKRUN_GUEST_STDOUT: 'out-line\n', STUB_LIBKRUN_GUEST_STDERR: 'err-line\n' },
    );
    assert.equal(run.code, 3, run.stderr);
    assert.equal(run.stdout, 'out-line\n');
    assert.equal(run.stderr, 'err-line\n');
    assert.deepEqual(readStubRecord(rec), [
      'krun_set_log_level(level=2)',
      'krun_create_ctx(=> 1)',
      'krun_set_vm_config(ctx_id=1, num_vcpus=2, ram_mib=256)',
      `krun_set_root(ctx_id=1, root_path=${cQuote(work)})`,
      'krun_add_virtiofs(ctx_id=1, c_tag="mc-vol-0", c_path="/host/vol")',
      'krun_disable_implicit_vsock(ctx_id=1)',
      'krun_add_vsock(ctx_id=1, tsi_features=1)',
      'krun_set_port_map(ctx_id=1, port_map=["18080:8080", NULL])',
      'krun_set_rlimits(ctx_id=1, rlimits=["RLIMIT_NOFILE=64:128", NULL])',
      'krun_set_workdir(ctx_id=1, workdir_path="/work dir")',
      'krun_set_exec(ctx_id=1, exec_path="/bin/echo", argv=["a b", "", "\\xc3\\xbc", NULL], envp=["K=v w", NULL])',
      `krun_set_console_output(ctx_id=1, c_filepath=${cQuote(join(work, 'console.log'))})`,
      'krun_add_virtio_console_default(ctx_id=1, input_fd=0, output_fd=1, err_fd=2)',
      'krun_start_enter(ctx_id=1, mode="exit:3")',
    ]);
  });

  test('stub libkrun: krun_start_enter returning -EINVAL is reported on fd 3 and exits with the setup-failed code', async () => {
    newRecord();
    const run = await runChild(childConfig(), { STUB_LIBKRUN_ENTER: 'return:-22' });
    assert.equal(run.code, KRUN_CHILD_SETUP_FAILED_EXIT);
    const last = run.status.at(-1);
    assert.ok(last && last.event === 'error');
    assert.equal(last.code, 'MC_VM_LIBKRUN_CALL_FAILED');
    assert.equal(last.message, 'krun_start_enter failed: Invalid argument (EINVAL)');
    assert.equal(last.details.errno, 22);
  });

  test('stub libkrun: a failing krun_set_root stops the child before krun_start_enter', async () => {
    const rec = newRecord();
    const run = await runChild(childConfig({ root: '/does/not/exist' }), { STUB_LIBKRUN_FAIL: 'krun_set_root:-2' });
    assert.equal(run.code, KRUN_CHILD_SETUP_FAILED_EXIT);
    assert.deepEqual(run.status, [
      { event: 'error', code: 'MC_VM_LIBKRUN_CALL_FAILED', message: 'krun_set_root failed: No such file or directory (ENOENT)', details: { fn: 'krun_set_root', errno: 2, errnoName: 'ENOENT' } },
    ]);
    assert.ok(!readStubRecord(rec).some((l) => l.startsWith('krun_start_enter')));
  });

  test('stub libkrun (minimal): network "none" is refused when libkrun cannot disable TSI', async () => {
    newRecord();
    const run = await runChild(childConfig({ libkrunPath: stub.minimal }), {});
    assert.equal(run.code, KRUN_CHILD_SETUP_FAILED_EXIT);
    const last = run.status.at(-1);
    assert.ok(last && last.event === 'error');
    assert.match(last.message, /has no krun_disable_implicit_vsock: cannot run a VM without network access/);
  });

  test('a malformed config file is reported naming the field', async () => {
    const cfgPath = join(work, 'bad.json');
    writeFileSync(cfgPath, JSON.stringify({ ...childConfig(), exec: { path: '/x', args: 'not-an-array', env: [] } }));
    const child = spawn(process.execPath, [krunChildEntry(), cfgPath], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let status = '';
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (status += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    assert.equal(code, KRUN_CHILD_SETUP_FAILED_EXIT);
    assert.match(status, /field \\"exec.args\\" is missing or has the wrong type/);
  });
});

process.on('exit', () => rmSync(work, { recursive: true, force: true }));
