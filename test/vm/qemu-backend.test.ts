/**
 * Real QEMU boots under TCG: the conformance suite plus what only the qemu
 * backend does (block-device image root, copy-on-write disk, 9p volumes, resources,
 * capabilities, watchdog).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMonocoreError } from '@monocore/engine';
import { hypervisorBackendSuite } from '../conformance/hypervisor-backend.suite.js';
import { backend, spec, tempDir, testRootfs } from './vm-fixtures.js';

const qemu = backend();
hypervisorBackendSuite('qemu', () => ({ backend: qemu, spec }));

test('qemu: writable root is copy-on-write per service; writes persist across restarts; volumes are read-write and mapped', async () => {
  const vol = tempDir('vol');
  writeFileSync(join(vol, 'in.txt'), 'from the host\n');
  const script =
    'cat /data/in.txt; echo written-by-guest > /data/out.txt; ' +
    'cp /bin/busybox /data/suid && chmod 4755 /data/suid && ls -l /data/suid | cut -c1-10; ' +
    'echo "$1" > /etc/marker; echo changed > /bin/true-copy; rm /etc/hostname.bak 2>/dev/null; cat /etc/marker';
  const a = spec('cow-a', { command: '/bin/sh', args: ['-c', script, 'sh', 'service-a'], volumes: [{ host: vol, guest: '/data' }] });
  const b = spec('cow-b', {
    command: '/bin/sh',
    args: ['-c', 'cat /etc/marker 2>&1; ls /data 2>&1; echo "$(nproc) $(grep MemTotal /proc/meminfo)"; echo "$(ulimit -Sn) $(ulimit -Hn) $(hostname) $(cat /etc/hostname)"'],
    cpus: 2,
    ramMib: 300,
    hostname: 'bee',
    rlimits: [{ resource: 'nofile', soft: 4096, hard: 8192 }],
  });
  const [ha, hb] = await Promise.all([qemu.start(a), qemu.start(b)]);
  const [ea, eb] = await Promise.all([ha.wait(), hb.wait()]);
  assert.deepEqual(ea, { exitCode: 0, reason: 'exited' }, a.stderr.text);
  assert.deepEqual(eb, { exitCode: 0, reason: 'exited' }, b.stderr.text);
  assert.equal(a.stdout.text, 'from the host\n-rwsr-xr-x\nservice-a\n', 'the guest sees its setuid bit');
  // Host side of the volume: the guest's file arrived; its setuid copy is a plain 0600 file.
  assert.equal(readFileSync(join(vol, 'out.txt'), 'utf8'), 'written-by-guest\n');
  const suid = statSync(join(vol, 'suid'));
  assert.equal(suid.mode & 0o7777, 0o600, `host mode is ${(suid.mode & 0o7777).toString(8)}: no setuid, no exec on the host`);
  // Service b: no trace of a's writes, no volume, sees 2 cpus and ~300 MiB.
  const [marker, ls, res, limits] = b.stdout.text.split('\n');
  assert.equal(limits, '4096 8192 bee bee', 'rlimits and hostname applied');
  assert.match(marker ?? '', /No such file/);
  assert.match(ls ?? '', /No such file/);
  const m = /^(\d+) MemTotal:\s+(\d+) kB$/.exec(res ?? '');
  assert.ok(m, `resources line: ${res}`);
  assert.equal(Number(m[1]), 2);
  assert.ok(Number(m[2]) > 200 * 1024 && Number(m[2]) <= 300 * 1024, `MemTotal ${m[2]} kB for ramMib 300`);
  // The image is untouched.
  const rootfs = testRootfs();
  assert.equal(existsSync(join(rootfs, 'etc/marker')), false);
  assert.equal(existsSync(join(rootfs, 'bin/true-copy')), false);
  // Restart a with the same stateDir: its writes are still there; the disk file is sparse.
  const a2 = spec('cow-a', { command: '/bin/cat', args: ['/etc/marker', '/bin/true-copy'], stateDir: a.stateDir });
  const ea2 = await (await qemu.start(a2)).wait();
  assert.deepEqual(ea2, { exitCode: 0, reason: 'exited' }, a2.stderr.text);
  assert.equal(a2.stdout.text, 'service-a\nchanged\n');
  const disk = statSync(join(a.stateDir, 'upper.ext4'));
  assert.ok(disk.blocks * 512 < disk.size / 4, 'the writable disk is sparse (O(1) in image size)');
  for (const d of [vol, a.stateDir, b.stateDir]) rmSync(d, { recursive: true, force: true });
});

test('qemu: a guest that does not report started in time is killed by the watchdog with its console tail', async () => {
  const s = spec('slowboot', { bootTimeoutMs: 300 });
  const t0 = Date.now();
  const h = await qemu.start(s);
  await assert.rejects(h.started, (e: unknown) => isMonocoreError(e, 'MC_VM_BOOT_TIMEOUT'));
  const exit = await h.wait();
  assert.equal(exit.reason, 'boot-timeout');
  assert.equal(exit.exitCode, null);
  assert.match(exit.detail ?? '', /console tail/);
  assert.ok(Date.now() - t0 < 15_000, 'killed promptly');
  assert.throws(() => process.kill(h.pid, 0), 'the hypervisor process is gone');
  rmSync(s.stateDir, { recursive: true, force: true });
});

test('qemu: an auto-detected KVM that fails its boot probe falls back to TCG and says why', async () => {
  // Detection is told KVM is usable. On this host KVM is kvm_pvm (guests crawl and never
  // reach init) and /dev/kvm may be missing elsewhere: either way the real probe boot fails,
  // and the backend must fall back to TCG rather than hand out a VM that never boots.
  const b = backend({ detectAccel: () => ({ accel: 'kvm', reason: 'test: pretend /dev/kvm is usable' }), accelProbeTimeoutMs: 4000 });
  const a = await b.available();
  assert.equal(a.available, true, a.available ? '' : a.reason);
  assert.equal(a.available && a.accel, 'tcg');
  assert.match(b.accel.reason, /^kvm boot probe failed \(.+\); using TCG$/);
  const s = spec('after-fallback', { command: '/bin/echo', args: ['booted under tcg'] });
  const exit = await (await b.start(s)).wait();
  assert.deepEqual(exit, { exitCode: 0, reason: 'exited' }, s.stderr.text);
  assert.equal(s.stdout.text, 'booted under tcg\n');
  rmSync(s.stateDir, { recursive: true, force: true });
});

test('qemu: as root, each VM\'s QEMU runs as a uid of its own: no capability without volumes, dac_override + fowner with one; files only through fds', async () => {
  assert.equal(process.getuid?.(), 0, 'run as root (as CI does): without root QEMU runs as the invoking user');
  const vol = tempDir('capvol');
  const a = spec('uid-a', { command: '/bin/sleep', args: ['30'] });
  const b = spec('uid-b', { command: '/bin/sleep', args: ['30'], volumes: [{ host: vol, guest: '/data' }] });
  const [ha, hb] = await Promise.all([qemu.start(a), qemu.start(b)]);
  try {
    await Promise.all([ha.started, hb.started]);
    const status = (pid: number): string => readFileSync(`/proc/${pid}/status`, 'utf8');
    const uidOf = (pid: number): number[] => (/^Uid:\s+(.*)$/m.exec(status(pid))?.[1] ?? '').split(/\s+/).map(Number);
    const [ua, ub] = [uidOf(ha.pid), uidOf(hb.pid)];
    assert.ok(ua.every((u) => u === ua[0]) && ub.every((u) => u === ub[0]), `real/effective/saved/fs uids agree: ${ua} ${ub}`);
    assert.ok(ua[0]! >= 0x70000000 && ub[0]! >= 0x70000000, `per-VM uids: ${ua[0]} ${ub[0]}`);
    assert.notEqual(ua[0], ub[0], 'no two running VMs share a uid');
    // Without volumes nothing at all (the image and the disk are fds we opened); with a
    // volume dac_override (bit 1) + fowner (bit 3) = 0xa. No way to get more (bounding set,
    // NoNewPrivs), in every thread, vCPU and I/O threads included, under QEMU's seccomp filter.
    for (const [vm, caps] of [[ha, '0000000000000000'], [hb, '000000000000000a']] as const) {
      assert.match(status(vm.pid), /^Name:\s+qemu-system/m, 'the pid is QEMU itself, not a wrapper');
      assert.match(status(vm.pid), /^NoNewPrivs:\s+1$/m);
      const tasks = readdirSync(`/proc/${vm.pid}/task`);
      assert.ok(tasks.length > 1, `QEMU runs several threads (${tasks.length})`);
      for (const t of tasks) {
        const st = readFileSync(`/proc/${vm.pid}/task/${t}/status`, 'utf8');
        assert.match(st, /^Seccomp:\s+2$/m, `thread ${t} of QEMU ${vm.pid} runs under a seccomp filter`);
        for (const set of ['CapEff', 'CapPrm', 'CapBnd', 'CapAmb']) assert.match(st, new RegExp(`^${set}:\\s+${caps}$`, 'm'), `thread ${t}: ${set}`);
      }
    }
    // The image reaches QEMU as an fd opened read-only; by its path QEMU's uid cannot open it.
    const fds = readdirSync(`/proc/${ha.pid}/fd`).map((fd) => ({ fd, target: readlinkSync(`/proc/${ha.pid}/fd/${fd}`) }));
    const image = fds.find((f) => f.target === join(a.stateDir, 'rootfs.erofs'));
    assert.ok(image, `QEMU holds the block image: ${fds.map((f) => f.target).join(', ')}`);
    const flags = Number.parseInt(/^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/${ha.pid}/fdinfo/${image.fd}`, 'utf8'))?.[1] ?? '', 8);
    assert.equal(flags & 3, 0, 'O_RDONLY');
    const asQemu = spawnSync('setpriv', ['--reuid', String(ua[0]), '--regid', String(ua[0]), '--clear-groups', 'cat', image.target], { encoding: 'utf8' });
    assert.notEqual(asQemu.status, 0);
    assert.match(asQemu.stderr, /Permission denied/);
  } finally {
    await Promise.all([ha.kill(), hb.kill()]);
    for (const d of [a.stateDir, b.stateDir, vol]) rmSync(d, { recursive: true, force: true });
  }
});

test('qemu: guest RAM is not mergeable by KSM (mem-merge=off) unless the backend is told memMerge (MONOCORE_MEM_MERGE=1)', async () => {
  // The default backend of this file: MONOCORE_MEM_MERGE must not leak in from the environment.
  assert.ok(!process.env.MONOCORE_MEM_MERGE, 'MONOCORE_MEM_MERGE is set in the test environment');
  const merging = backend({ memMerge: true });
  const a = spec('merge-off', { command: '/bin/sleep', args: ['30'] });
  const b = spec('merge-on', { command: '/bin/sleep', args: ['30'] });
  const [ha, hb] = await Promise.all([qemu.start(a), merging.start(b)]);
  try {
    await Promise.all([ha.started, hb.started]);
    /** VmFlags of QEMU's guest RAM: its anonymous mapping of exactly ramMib. `mg` = madvised MERGEABLE. */
    const guestRamFlags = (pid: number, ramMib: number): string[] => {
      const maps = readFileSync(`/proc/${pid}/smaps`, 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
      const ram = maps.filter((m) => !m.split('\n')[0]!.split(/\s+/)[5] && new RegExp(`^Size:\\s+${ramMib * 1024} kB$`, 'm').test(m));
      assert.equal(ram.length, 1, `one anonymous mapping of ${ramMib} MiB in QEMU ${pid}`);
      return (/^VmFlags:(.*)$/m.exec(ram[0]!)?.[1] ?? '').trim().split(/\s+/);
    };
    assert.ok(!guestRamFlags(ha.pid, a.ramMib).includes('mg'), 'default: not mergeable');
    assert.ok(guestRamFlags(hb.pid, b.ramMib).includes('mg'), 'memMerge: mergeable (QEMU\'s own default)');
    assert.match(readFileSync(`/proc/${ha.pid}/cmdline`, 'utf8'), /mem-merge=off/);
    assert.doesNotMatch(readFileSync(`/proc/${hb.pid}/cmdline`, 'utf8'), /mem-merge/);
  } finally {
    await Promise.all([ha.kill(), hb.kill()]);
    for (const d of [a.stateDir, b.stateDir]) rmSync(d, { recursive: true, force: true });
  }
});

test('qemu: missing kernel fails with MC_VM_KERNEL_NOT_FOUND naming the set-up command', async () => {
  const dir = tempDir('nokernel');
  mkdirSync(join(dir, 'k'));
  const b = backend({ kernelDir: join(dir, 'k') });
  const a = await b.available();
  assert.equal(a.available, false);
  assert.match(a.available ? '' : a.reason, /scripts\/guest-kernel\.sh/);
  await assert.rejects(b.start(spec('nok')), (e: unknown) => isMonocoreError(e, 'MC_VM_KERNEL_NOT_FOUND'));
  assert.ok(lstatSync(dir).isDirectory());
  rmSync(dir, { recursive: true, force: true });
});

test('qemu: a guest flooding its console cannot fill the host disk (console.log is capped)', async () => {
  const capped = backend({ consoleLimitBytes: 4096 });
  const s = spec('flood', { command: '/bin/sh', args: ['-c', 'i=0; while [ $i -lt 400 ]; do echo "flood-line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" > /dev/console; i=$((i+1)); done; echo done'] });
  const exit = await (await capped.start(s)).wait();
  assert.deepEqual(exit, { exitCode: 0, reason: 'exited' }, s.stderr.text);
  assert.equal(s.stdout.text, 'done\n', 'console writes never reach the service stdout');
  const log = readFileSync(join(s.stateDir, 'console.log'), 'utf8');
  assert.ok(log.length < 4096 + 200, `console.log is ${log.length} bytes`);
  assert.match(log, /console\.log capped at 4096 bytes/);
});
