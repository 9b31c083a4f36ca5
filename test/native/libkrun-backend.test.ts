// LibkrunBackend end to end through its per-VM child process, against the
// STUB libkrun (stub-libkrun.c) — NOT the real libkrun, which cannot be
// installed on these machines. What this proves: the VmSpec -> krun_* mapping,
// the child-process model (exit codes, stop, kill, watchdog, setup errors),
// stdout/stderr plumbing, and the host side of the writable root and volumes
// (overlay + bind mounts in a private mount namespace), which the stub
// exercises by writing/reading files under the root it was given, as a guest
// would through virtio-fs. What it cannot prove: that a real libkrun boots.
import { test, describe, before, after } from 'node:test';
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { LibkrunBackend, MonocoreHome, chooseBackend, isMonocoreError, libkrunPaths, type VmSpec } from '@monocore/engine';
import { buildStubLibkrun, readStubRecord, cArray, cQuote } from './stub-libkrun.js';

const work = mkdtempSync(join(tmpdir(), 'mc-libkrun-backend-'));
const image = join(work, 'image');
const home = new MonocoreHome(join(work, 'home'));
let stubPath: string;
let n = 0;

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (d: Buffer) => chunks.push(d));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

function spec(over: Partial<VmSpec> = {}): VmSpec {
  const id = `svc${++n}`;
  return {
    id,
    rootfs: image,
    command: '/bin/echo',
    args: ['hello world', 'ünïcödé ✓', "it's", '$HOME `x` *'],
    env: ['PATH=/usr/bin:/bin', 'MODE=a', 'MODE=b'],
    workdir: '/srv',
    cpus: 2,
    ramMib: 256,
    volumes: [],
    ports: [],
    stateDir: join(work, 'state', id),
    network: { mode: 'none' },
    ...over,
  };
}

/** Sets the stub's knobs for one test (the VM process inherits process.env). */
function stubEnv(vars: Record<string, string>): string {
  const record = join(work, `record-${++n}.txt`);
  for (const k of Object.keys(process.env)) if (k.startsWith('STUB_LIBKRUN_')) delete process.env[k];
  Object.assign(process.env, vars, { STUB_LIBKRUN_RECORD: record });
  return record;
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(dir));
}

before(() => {
  stubPath = buildStubLibkrun().full;
  mkdirSync(join(image, 'etc'), { recursive: true });
  mkdirSync(join(image, 'srv'), { recursive: true });
  writeFileSync(join(image, 'etc', 'os-release'), 'image-original\n');
  symlinkSync('/etc', join(image, 'hostetc')); // an image symlink pointing at a host-looking path
});

after(() => {
  for (const k of Object.keys(process.env)) if (k.startsWith('STUB_LIBKRUN_')) delete process.env[k];
  rmSync(work, { recursive: true, force: true });
});

describe('LibkrunBackend against the STUB libkrun', () => {
  const backend = (): LibkrunBackend => new LibkrunBackend({ home, libkrunPath: stubPath });

  test('stub libkrun: spec maps to krun calls; exit code, stdout and stderr come back separately', async () => {
    const record = stubEnv({ STUB_LIBKRUN_ENTER: 'exit:7', STUB_LIBKRUN_GUEST_STDOUT: 'to stdout\n', STUB_LIBKRUN_GUEST_STDERR: 'to stderr\n' });
    const out = collect();
    const err = collect();
    const s = spec({ stdout: out.stream, stderr: err.stream, hostname: 'web-1' });
    const vm = await backend().start(s);
    assert.ok(vm.pid > 0);
    assert.equal(vm.commandTransport, 'krun_set_exec');
    await vm.started;
    const exit = await vm.wait();
    assert.deepEqual(exit, { exitCode: 7, reason: 'exited' });
    assert.equal(out.text(), 'to stdout\n');
    assert.equal(err.text(), 'to stderr\n');
    const p = libkrunPaths(s.stateDir);
    const lines = readStubRecord(record);
    assert.deepEqual(lines, [
      `krun_init_log(target_fd=${/target_fd=(\d+)/.exec(lines[0] ?? '')?.[1]}, level=1, style=2, options=1)`,
      'krun_create_ctx(=> 1)',
      'krun_set_vm_config(ctx_id=1, num_vcpus=2, ram_mib=256)',
      `krun_set_root(ctx_id=1, root_path="${p.root}")`,
      'krun_disable_implicit_vsock(ctx_id=1)',
      'krun_set_workdir(ctx_id=1, workdir_path="/srv")',
      // later MODE wins; HOSTNAME comes from spec.hostname
      `krun_set_exec(ctx_id=1, exec_path="/bin/echo", argv=${cArray(s.args)}, envp=${cArray(['PATH=/usr/bin:/bin', 'MODE=b', 'HOSTNAME=web-1'])})`,
      `krun_set_console_output(ctx_id=1, c_filepath="${p.console}")`,
      'krun_add_virtio_console_default(ctx_id=1, input_fd=0, output_fd=1, err_fd=2)',
      'krun_start_enter(ctx_id=1, mode="exit:7")',
    ]);
    assert.ok(/^krun_init_log\(target_fd=\d+, /.test(lines[0] ?? ''));
    assert.equal(existsSync(p.config), false, 'the config file (with the guest env) is removed');
    assert.deepEqual(mountsUnder(work), [], 'no mount leaks into the host namespace');
  });

  test('stub libkrun: no guest agent: agent() and sandbox specs say MC_VM_AGENT_UNSUPPORTED', async () => {
    stubEnv({ STUB_LIBKRUN_ENTER: 'exit:0' });
    const vm = await backend().start(spec());
    await assert.rejects(vm.agent(), (e) => isMonocoreError(e, 'MC_VM_AGENT_UNSUPPORTED') && /no guest agent/.test(e.message));
    await vm.wait();
    await assert.rejects(backend().start(spec({ sandbox: true, command: '', args: [] })), (e) => isMonocoreError(e, 'MC_VM_AGENT_UNSUPPORTED') && e.details.field === 'sandbox');
  });

  for (const code of [0, 1, 125, 126, 127]) {
    test(`stub libkrun: guest exit code ${code} propagates through the VM process`, async () => {
      stubEnv({ STUB_LIBKRUN_ENTER: `exit:${code}` });
      const vm = await backend().start(spec());
      const exit = await vm.wait();
      assert.equal(exit.exitCode, code);
      assert.equal(exit.reason, 'exited');
      if (code === 127) assert.match(exit.detail ?? '', /not found/);
    });
  }

  test('stub libkrun: writable root is per-service copy-on-write; writes persist across restarts, never reach the image', async () => {
    stubEnv({ STUB_LIBKRUN_GUEST_WRITE: 'etc/os-release=service-a-was-here' });
    const a = spec();
    assert.equal((await (await backend().start(a)).wait()).exitCode, 0);
    const upperFile = join(libkrunPaths(a.stateDir).upper, 'etc', 'os-release');
    assert.equal(readFileSync(upperFile, 'utf8'), 'service-a-was-here');
    assert.equal(readFileSync(join(image, 'etc', 'os-release'), 'utf8'), 'image-original\n', 'image untouched');

    // Restart of the same service (same stateDir) sees its own write.
    const record = stubEnv({ STUB_LIBKRUN_GUEST_READ: 'etc/os-release' });
    await (await backend().start({ ...a })).wait();
    assert.ok(readStubRecord(record).includes('guest_read("etc/os-release", content="service-a-was-here")'));

    // Another service sees the image, not service a's write.
    const record2 = stubEnv({ STUB_LIBKRUN_GUEST_READ: 'etc/os-release' });
    await (await backend().start(spec())).wait();
    assert.ok(readStubRecord(record2).includes('guest_read("etc/os-release", content="image-original\\n")'));
    assert.deepEqual(mountsUnder(work), []);
  });

  test('stub libkrun: volumes are bind-mounted into the root (read-write and read-only)', async () => {
    const rw = join(work, 'vol-rw');
    const ro = join(work, 'vol-ro');
    mkdirSync(rw);
    mkdirSync(ro);
    writeFileSync(join(rw, 'in.txt'), 'from host');
    writeFileSync(join(ro, 'cfg.txt'), 'read only');
    const record = stubEnv({ STUB_LIBKRUN_GUEST_READ: 'data/in.txt,config/cfg.txt', STUB_LIBKRUN_GUEST_WRITE: 'data/out.txt=from guest' });
    const s = spec({ volumes: [{ host: rw, guest: '/data' }, { host: ro, guest: '/config', readOnly: true }] });
    assert.equal((await (await backend().start(s)).wait()).exitCode, 0);
    const lines = readStubRecord(record);
    assert.ok(lines.includes('guest_read("data/in.txt", content="from host")'), lines.join('\n'));
    assert.ok(lines.includes('guest_read("config/cfg.txt", content="read only")'));
    assert.equal(readFileSync(join(rw, 'out.txt'), 'utf8'), 'from guest');

    const record2 = stubEnv({ STUB_LIBKRUN_GUEST_WRITE: 'config/evil.txt=x' });
    await (await backend().start(spec({ volumes: [{ host: ro, guest: '/config', readOnly: true }] }))).wait();
    assert.ok(readStubRecord(record2).some((l) => l.startsWith('guest_write(') && l.endsWith('ok=false)')));
    assert.equal(existsSync(join(ro, 'evil.txt')), false, 'a read-only volume refuses writes');
    assert.deepEqual(mountsUnder(work), []);
  });

  test('stub libkrun: a volume target crossing an image symlink is refused before the VM starts', async () => {
    const vol = join(work, 'vol-sym');
    mkdirSync(vol);
    const record = stubEnv({});
    const vm = await backend().start(spec({ volumes: [{ host: vol, guest: '/hostetc/pwned' }] }));
    await assert.rejects(vm.started, (e: unknown) => isMonocoreError(e, 'MC_VM_LIBKRUN_SETUP_FAILED') && /crosses the symlink "\/hostetc" in the image/.test(e.message));
    const exit = await vm.wait();
    assert.equal(exit.reason, 'hypervisor-error');
    assert.equal(exit.exitCode, null);
    assert.equal(existsSync('/etc/pwned'), false);
    assert.deepEqual(readStubRecord(record), [], 'libkrun was never called');
  });

  test('stub libkrun: a failing krun call rejects `started` with the errno spelled out', async () => {
    stubEnv({ STUB_LIBKRUN_FAIL: 'krun_set_root:-2' });
    const vm = await backend().start(spec());
    await assert.rejects(vm.started, (e: unknown) => {
      assert.ok(isMonocoreError(e, 'MC_VM_LIBKRUN_CALL_FAILED'));
      assert.match(e.message, /krun_set_root failed: No such file or directory \(ENOENT\)$/);
      assert.equal(e.details.fn, 'krun_set_root');
      assert.equal(e.details.errno, 2);
      return true;
    });
    const exit = await vm.wait();
    assert.equal(exit.reason, 'hypervisor-error');
    assert.match(exit.detail ?? '', /MC_VM_LIBKRUN_CALL_FAILED: krun_set_root failed/);
  });

  test('stub libkrun: stop() ends a running VM (SIGTERM) and kill() a second one (SIGKILL)', async () => {
    stubEnv({ STUB_LIBKRUN_ENTER: 'pause' });
    const vm = await backend().start(spec());
    await vm.started;
    const exit = await vm.stop({ timeoutMs: 5000 });
    assert.deepEqual({ code: exit.exitCode, reason: exit.reason }, { code: 143, reason: 'stopped' });
    assert.deepEqual(await vm.stop(), exit, 'idempotent');

    const vm2 = await backend().start(spec());
    await vm2.started;
    const exit2 = await vm2.kill();
    assert.deepEqual({ code: exit2.exitCode, reason: exit2.reason }, { code: 137, reason: 'killed' });
    assert.deepEqual(await vm2.kill(), exit2);
    assert.throws(() => process.kill(vm2.pid, 0), /ESRCH/);
    assert.deepEqual(mountsUnder(work), []);
  });

  test('stub libkrun: a crash of the supervising process takes the VM process with it (PR_SET_PDEATHSIG)', async () => {
    stubEnv({ STUB_LIBKRUN_ENTER: 'pause' });
    const script = join(work, `supervisor-${++n}.mjs`);
    const s = spec();
    writeFileSync(
      script,
      `const { LibkrunBackend, MonocoreHome } = await import(${JSON.stringify(import.meta.resolve('@monocore/engine'))});
const vm = await new LibkrunBackend({ home: new MonocoreHome(${JSON.stringify(home.root)}), libkrunPath: ${JSON.stringify(stubPath)} }).start(${JSON.stringify(s)});
await vm.started;
process.stdout.write(vm.pid + '\\n');
setInterval(() => {}, 1000);
`,
    );
    const sup = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const vmPid = await new Promise<number>((resolve, reject) => {
      let out = '';
      sup.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(Number(out.trim()));
      });
      sup.once('exit', (code) => reject(new Error(`supervisor exited early (${code})`)));
    });
    assert.ok(vmPid > 0);
    process.kill(vmPid, 0); // running
    sup.kill('SIGKILL');
    let alive = true;
    for (let i = 0; i < 100 && alive; i++) {
      await new Promise((r) => setTimeout(r, 50));
      try {
        process.kill(vmPid, 0);
      } catch {
        alive = false;
      }
    }
    assert.equal(alive, false, `VM process ${vmPid} outlived its supervisor`);
  });

  test('stub libkrun: the boot watchdog kills a VM process that does not reach krun_start_enter in time', async () => {
    stubEnv({});
    const vm = await backend().start(spec({ bootTimeoutMs: 1 }));
    await assert.rejects(vm.started, (e: unknown) => isMonocoreError(e, 'MC_VM_BOOT_TIMEOUT'));
    const exit = await vm.wait();
    assert.equal(exit.reason, 'boot-timeout');
    assert.equal(exit.exitCode, null);
  });

  test('stub libkrun: published ports need the TSI opt-in; with it, they become the "host:guest" port map', async () => {
    stubEnv({});
    const ports = [{ host: 18080, guest: 8080 }, { host: 18443, guest: 443 }];
    await assert.rejects(backend().start(spec({ ports })), (e: unknown) => isMonocoreError(e, 'MC_VM_LIBKRUN_UNSUPPORTED') && /ports: publishing ports with libkrun needs TSI/.test(e.message));
    await assert.rejects(
      new LibkrunBackend({ home, libkrunPath: stubPath, allowTsi: true }).start(spec({ ports: [{ host: 1, guest: 2, bindAddress: '0.0.0.0' }] })),
      (e: unknown) => isMonocoreError(e, 'MC_VM_LIBKRUN_UNSUPPORTED') && /ports\[0\]\.bindAddress/.test(e.message),
    );
    const record = stubEnv({});
    const vm = await new LibkrunBackend({ home, libkrunPath: stubPath, allowTsi: true }).start(spec({ ports }));
    assert.equal((await vm.wait()).exitCode, 0);
    const lines = readStubRecord(record);
    assert.ok(lines.includes('krun_add_vsock(ctx_id=1, tsi_features=1)'));
    assert.ok(lines.includes('krun_set_port_map(ctx_id=1, port_map=["18080:8080", "18443:443", NULL])'));
  });

  test('stub libkrun: a bounded disk (diskMib) is refused: its writable layer is a host directory', async () => {
    await assert.rejects(backend().start(spec({ diskMib: 256 })), (e: unknown) => isMonocoreError(e, 'MC_VM_LIBKRUN_UNSUPPORTED') && /diskMib: .*no size limit/.test(e.message));
  });

  test('stub libkrun: a command the kernel command line cannot carry travels in /.krun_config.json, byte for byte', async () => {
    const args = ['say "hi"', '', 'line1\nline2', 'tab\there', 'ünïcödé ✓ 日本', "it's", '\\back'];
    const record = stubEnv({ STUB_LIBKRUN_GUEST_READ: '.krun_config.json', STUB_LIBKRUN_ENTER: 'exit:4' });
    const s = spec({ command: '/usr/bin/my prog', args, env: ['Q="quoted"', 'NL=a\nb', 'Q2=x'], workdir: '/srv/my dir' });
    const vm = await backend().start(s);
    assert.equal(vm.commandTransport, 'krun_config.json');
    assert.equal((await vm.wait()).exitCode, 4);
    const expected = JSON.stringify({
      Env: ['Q="quoted"', 'NL=a\nb', 'Q2=x', `HOSTNAME=${s.id}`],
      WorkingDir: '/srv/my dir',
      Cmd: ['/usr/bin/my prog', ...args],
    });
    assert.ok(expected.indexOf('"Env"') < expected.indexOf('"WorkingDir"') && expected.indexOf('"WorkingDir"') < expected.indexOf('"Cmd"'));
    const lines = readStubRecord(record);
    // What the guest init would read at /.krun_config.json (through the root share).
    assert.ok(lines.includes(`guest_read(".krun_config.json", content=${cQuote(expected)})`), lines.join('\n'));
    // The command line carries nothing of it: no krun_set_exec, no krun_set_workdir.
    assert.ok(!lines.some((l) => l.startsWith('krun_set_exec') || l.startsWith('krun_set_workdir')), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('krun_start_enter(')));
    // The mount point is an empty file in the service's own layer; the image has none.
    assert.equal(readFileSync(join(libkrunPaths(s.stateDir).upper, '.krun_config.json'), 'utf8'), '');
    assert.equal(existsSync(join(image, '.krun_config.json')), false);
    assert.deepEqual(mountsUnder(work), []);
  });

  test('stub libkrun: many arguments, or env names the kernel would take as boot parameters, go through /.krun_config.json too', async () => {
    stubEnv({});
    const many = Array.from({ length: 40 }, (_, i) => `a${i}`);
    for (const over of [{ args: many }, { env: ['PATH=/bin', 'root=/dev/sda'] }, { env: ['my.setting=1'] }, { env: ['lower=1'] }]) {
      const vm = await backend().start(spec(over));
      assert.equal(vm.commandTransport, 'krun_config.json', JSON.stringify(over));
      assert.equal((await vm.wait()).exitCode, 0);
    }
    const plain = await backend().start(spec({ env: ['PATH=/bin', 'MY_VAR_2=x y'] }));
    assert.equal(plain.commandTransport, 'krun_set_exec');
    await plain.wait();
  });

  test('stub libkrun: an image whose /.krun_config.json is a symlink is refused before the VM starts', async () => {
    const evil = join(work, 'image-evil');
    mkdirSync(evil);
    symlinkSync('/etc/passwd', join(evil, '.krun_config.json'));
    const record = stubEnv({});
    const vm = await backend().start(spec({ rootfs: evil, args: ['needs "the file"'] }));
    await assert.rejects(vm.started, (e: unknown) => isMonocoreError(e, 'MC_VM_LIBKRUN_SETUP_FAILED') && /"\/\.krun_config\.json" in the image is not a regular file/.test(e.message));
    assert.equal((await vm.wait()).reason, 'hypervisor-error');
    assert.deepEqual(readStubRecord(record), []);
  });

  test('specs libkrun cannot run are refused, naming the field', async () => {
    await assert.rejects(
      backend().start(spec({ network: { mode: 'group', group: 'g', address: '10.88.0.2/24', peers: {}, localOnly: true } })),
      (e: unknown) => isMonocoreError(e, 'MC_VM_NETWORK_UNSUPPORTED') && /network: group networks/.test(e.message),
    );
    await assert.rejects(backend().start(spec({ cpus: 0 })), (e: unknown) => isMonocoreError(e, 'MC_VM_SPEC_INVALID') && /cpus/.test(e.message));
    await assert.rejects(backend().start(spec({ args: ['nul\0byte'] })), (e: unknown) => isMonocoreError(e, 'MC_VM_SPEC_INVALID') && /args\[0\]/.test(e.message));
  });
});

describe('LibkrunBackend.available()', () => {
  const host = (over: Partial<{ platform: NodeJS.Platform; files: string[]; rw: boolean; root: boolean }> = {}) => {
    const files = new Set(over.files ?? ['/dev/kvm', '/usr/bin/unshare']);
    return { platform: over.platform ?? 'linux', exists: (p: string) => files.has(p), canOpenRw: () => over.rw ?? true, isRoot: over.root ?? true };
  };

  test('libkrun missing: unavailable, saying where it looked', async () => {
    const b = new LibkrunBackend({ home, env: { MONOCORE_LIBKRUN_PATH: join(work, 'nope', 'libkrun.so.1') }, host: host() });
    const a = await b.available();
    assert.ok(!a.available);
    assert.match(a.reason, /MONOCORE_LIBKRUN_PATH=.*nope\/libkrun\.so\.1: cannot load libkrun .*\(file does not exist\)/);
  });

  test('stub libkrun: /dev/kvm missing, not accessible, or kvm_pvm: unavailable with the reason', async () => {
    const b = (h: ReturnType<typeof host>): LibkrunBackend => new LibkrunBackend({ home, libkrunPath: stubPath, host: h });
    const r = async (h: ReturnType<typeof host>): Promise<string> => {
      const a = await b(h).available();
      assert.ok(!a.available);
      return a.reason;
    };
    assert.match(await r(host({ files: ['/usr/bin/unshare'] })), /\/dev\/kvm does not exist/);
    assert.match(await r(host({ rw: false })), /\/dev\/kvm is not readable and writable/);
    assert.match(await r(host({ files: ['/dev/kvm', '/usr/bin/unshare', '/sys/module/kvm_pvm'] })), /kvm_pvm.*use the qemu backend/);
    assert.match(await r(host({ root: false })), /needs root/);
    assert.match(await r(host({ platform: 'win32' })), /Linux \(KVM\) and macOS \(HVF\) only/);
  });

  // libkrun is used only where it has booted a guest: available() ends with a real boot probe
  // (a VM whose command does not exist; only a booted guest init can answer exit 127).
  // The STUB stands in for the VMM here, so each verdict below is the stub's simulated one.
  test('stub libkrun: available() only after a boot probe answers like a booted guest init; each failing probe says why', async () => {
    const withEnter = (enter: string, extra: Partial<ConstructorParameters<typeof LibkrunBackend>[0]> = {}): LibkrunBackend =>
      new LibkrunBackend({ home, libkrunPath: stubPath, host: host(), env: { ...process.env, STUB_LIBKRUN_ENTER: enter }, ...extra });
    const ok = await withEnter('exit:127').available();
    assert.ok(ok.available, ok.available ? '' : ok.reason);
    assert.equal(ok.accel, 'kvm');
    assert.match(ok.detail ?? '', new RegExp(`^libkrun ${stubPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; boot probe ok: the guest init answered in \\d+ ms$`));

    const reasons: string[] = [];
    for (const b of [withEnter('exit:0'), withEnter('return:-22'), withEnter('pause', { probeTimeoutMs: 1500 })]) {
      const a = await b.available();
      assert.ok(!a.available, 'a failing probe makes libkrun unavailable');
      assert.match(a.reason, /failed its boot probe: /);
      reasons.push(a.reason);
    }
    assert.match(reasons[0]!, /expected the guest init's exit 127 for a missing command, got exited \(exit 0\)/);
    assert.match(reasons[1]!, /got exited \(exit 120\)/, "krun_start_enter returned: the child reports its set-up failure code");
    assert.match(reasons[2]!, /no answer from the guest within 1500 ms/);

    // auto picks qemu over a libkrun whose probe failed, and says so; it would pick libkrun after a good probe.
    const qemu = { name: 'qemu' as const, availability: { available: true as const, accel: 'tcg', detail: 'tcg: test' } };
    const failed = await withEnter('exit:0').available();
    const passed = await withEnter('exit:127').available();
    const overFailed = chooseBackend([{ name: 'libkrun', availability: failed }, qemu], 'auto');
    assert.equal(overFailed?.name, 'qemu');
    assert.match(overFailed?.reason ?? '', /^qemu \(tcg\), auto; libkrun passed over: libkrun .* failed its boot probe: .*; qemu: tcg: test$/);
    assert.equal(chooseBackend([{ name: 'libkrun', availability: passed }, qemu], 'auto')?.name, 'libkrun');
    assert.equal(chooseBackend([{ name: 'libkrun', availability: failed }, qemu], 'libkrun'), undefined, 'an explicit libkrun is not replaced by qemu');
  });

  test('this host: the answer matches the host (kvm_pvm here means unavailable)', async () => {
    const a = await new LibkrunBackend({ home, libkrunPath: stubPath }).available();
    // Some hosts of this kind have the kvm_pvm module loaded but no /dev/kvm at all: the missing
    // device is then the first reason given.
    if (!existsSync('/dev/kvm')) {
      assert.ok(!a.available);
      assert.match(a.reason, /\/dev\/kvm/);
    } else if (existsSync('/sys/module/kvm_pvm')) {
      assert.ok(!a.available);
      assert.match(a.reason, /kvm_pvm/);
    } else {
      assert.ok(a.available || /kvm|root|unshare/.test(a.reason));
    }
  });
});
