/**
 * Guests that exhaust their resources stay inside their VM (docs/THREATS.md, "Guests"):
 * real QEMU boots under TCG. A full writable disk is ENOSPC in the guest while the
 * host file stays at its size; the host keeps a disk reserve however many sparse disks
 * run; a fork bomb and an out-of-memory guest end only themselves, while a neighbour VM
 * keeps running and each QEMU stays within its RAM.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMonocoreError, type VmHandle } from '@monocore/engine';
import { aloneAmongVmTests, backend, spec } from './vm-fixtures.js';

// A fork bomb and an OOM guest measure their own guests' starvation: not beside other VM tests.
aloneAmongVmTests();

const MIB = 1024 * 1024;

/** Resolves once `text()` matches `re` (checked on every chunk the collector gets). */
function waitForOutput(s: ReturnType<typeof spec>, re: RegExp, what: string, timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => re.test(s.stdout.text);
    if (check()) return resolve();
    const timer = setTimeout(() => reject(new Error(`${what}: no ${re} within ${timeoutMs} ms; stdout: ${s.stdout.text.slice(-500)}`)), timeoutMs);
    const orig = s.stdout._write.bind(s.stdout);
    s.stdout._write = (chunk, enc, cb) => {
      orig(chunk, enc, cb);
      if (check()) {
        clearTimeout(timer);
        resolve();
      }
    };
  });
}

/** Peak resident memory of a live process, MiB (VmHWM). */
function peakRssMib(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

test('disk: a guest filling its writable disk gets ENOSPC; the host file never grows past the disk size', async () => {
  const qemu = backend({ diskReserveMib: 0 });
  const s = spec('fill', {
    diskMib: 64,
    command: '/bin/sh',
    args: ['-c', 'dd if=/dev/zero of=/fill bs=1M count=256 2>&1; echo "dd=$?"; sync; df -m / | tail -1'],
  });
  const exit = await (await qemu.start(s)).wait();
  assert.deepEqual(exit, { exitCode: 0, reason: 'exited' }, s.stderr.text);
  assert.match(s.stdout.text, /No space left on device/, s.stdout.text);
  assert.match(s.stdout.text, /^dd=1$/m, 'dd failed inside the guest');
  const disk = statSync(join(s.stateDir, 'upper.ext4'));
  assert.equal(disk.size, 64 * MIB, 'the disk file keeps its size');
  assert.ok(disk.blocks * 512 <= 64 * MIB, `the host holds at most the disk's 64 MiB (${(disk.blocks * 512) / MIB} MiB allocated)`);
});

test('disk reserve: a boot whose disk could push the host under its reserve is refused, naming every number; it fits again once a VM ends', async () => {
  const dir = statfsSync('/tmp');
  const freeMib = Math.floor((dir.bavail * dir.bsize) / MIB);
  // Room for one 600 MiB disk above the reserve, not for two (the test's own margin: 400 MiB).
  const qemu = backend({ diskReserveMib: freeMib - 1000 });
  const first = spec('reserve-a', { diskMib: 600, command: '/bin/sleep', args: ['300'] });
  const second = spec('reserve-b', { diskMib: 600, command: '/bin/echo', args: ['admitted'] });
  const a = await qemu.start(first);
  let b: VmHandle | undefined;
  try {
    await a.started;
    const refused = await qemu.start(second).then(
      (h) => {
        b = h;
        return undefined;
      },
      (e: unknown) => e,
    );
    assert.ok(isMonocoreError(refused, 'MC_VM_DISK_RESERVE'), `refused with MC_VM_DISK_RESERVE, got ${String(refused)}`);
    assert.match(refused.message, /^vm "reserve-b": not started: its 600 MiB disk may still grow by 600 MiB and running VMs' disks by \d+ MiB, but only \d+ MiB are free on .* and \d+ MiB must stay free \(MONOCORE_DISK_RESERVE_MIB\)/);
    assert.equal(refused.retryable, true);
    assert.throws(() => statSync(join(second.stateDir, 'upper.ext4')), 'nothing was created for the refused VM');
  } finally {
    await a.kill();
  }
  b = await qemu.start(second);
  assert.deepEqual(await b.wait(), { exitCode: 0, reason: 'exited' }, 'with the first VM gone, the second fits');
  assert.equal(second.stdout.text, 'admitted\n');
});

test('a fork bomb and an out-of-memory guest end only themselves: the neighbour VM keeps running, each QEMU stays within its RAM', async (t) => {
  const t0 = Date.now();
  const phase = (what: string): void => t.diagnostic(`${what} at ${Date.now() - t0} ms`);
  const qemu = backend({ diskReserveMib: 0 });
  const neighbour = spec('neighbour', { command: '/bin/sh', args: ['-c', 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done'] });
  const n = await qemu.start(neighbour);
  // Every VM this test starts ends with it, whatever fails: a fork bomb left running would hold
  // this file open until the runner's timeout and slow every other test meanwhile.
  const others: VmHandle[] = [];
  try {
    await waitForOutput(neighbour, /^tick 1$/m, 'neighbour');
    phase('neighbour ticking');

    // Fork bomb: the guest's process table fills; its QEMU is one process with a fixed RAM size.
    // Every second a subshell reads the guest's process count from /proc/loadavg with shell
    // builtins only (it cannot count on fork working by then): `read -t` on a FIFO is its clock.
    // It repeats because a starved guest may print late; any count of 30 or more (an idle guest
    // has about 5) shows the bomb went off — under TCG beside other VMs it may print only minutes in.
    // The census is the observer, not the subject: the guest's OOM killer (128 MiB, a fork bomb)
    // must never pick it (if it does, the census never prints: one suspected cause of the clean-clone failures).
    const census = 'echo -1000 > /proc/self/oom_score_adj; while :; do read -t 1 x <> /tmp/clock; read a b c d e < /proc/loadavg; echo "procs ${d#*/}"; done';
    const bomb = spec('forkbomb', { ramMib: 128, command: '/bin/sh', args: ['-c', `mkfifo /tmp/clock; (${census}) & echo armed; b() { b | b & }; b; sleep 1000`] });
    const hb = await qemu.start(bomb);
    others.push(hb);
    const wentOff = /^procs ([3-9]\d|\d{3,})$/m;
    await waitForOutput(bomb, wentOff, 'fork bomb census', 240_000);
    const procs = Number(wentOff.exec(bomb.stdout.text)?.[1]);
    assert.ok(procs >= 30, `the fork bomb went off (an idle guest has about 5) (${procs} processes in the guest)`);
    phase(`fork bomb at ${procs} processes`);
    const ticksBefore = (neighbour.stdout.text.match(/^tick /gm) ?? []).length;
    // Let it run until the neighbour has ticked 5 more times (it must, for this to end).
    await waitForOutput(neighbour, new RegExp(`^tick ${ticksBefore + 5}$`, 'm'), 'neighbour during the fork bomb', 120_000);
    phase('neighbour ticked through the fork bomb');
    const bombRss = peakRssMib(hb.pid);
    const bombExit = await hb.stop({ timeoutMs: 2000 });
    assert.ok(['stopped', 'killed'].includes(bombExit.reason), `the bombed VM ends when told: ${JSON.stringify(bombExit)}`);
    assert.ok(bombRss < 128 + 256, `QEMU of the bombed guest peaked at ${bombRss.toFixed(0)} MiB (guest RAM 128 MiB)`);

    // Out of memory: the guest's kernel kills the hog inside the guest; the VM ends with the command.
    // tail keeps the last lines of /dev/zero, which has no newline: one line that grows without end.
    const hog = spec('oom', { ramMib: 128, command: '/bin/tail', args: ['/dev/zero'] });
    const hh = await qemu.start(hog);
    others.push(hh);
    let hogRss = 0;
    const sample = (): void => {
      try {
        const v = peakRssMib(hh.pid);
        if (Number.isFinite(v)) hogRss = Math.max(hogRss, v);
      } catch {
        // gone
      }
    };
    sample();
    const sampler = setInterval(sample, 100);
    const hogExit = await hh.wait();
    clearInterval(sampler);
    phase('OOM guest ended');
    assert.equal(hogExit.reason, 'exited', JSON.stringify(hogExit));
    assert.equal(hogExit.exitCode, 137, `the guest kernel's OOM killer ended the hog (SIGKILL): ${JSON.stringify(hogExit)} ${hog.stderr.text}`);
    assert.ok(hogRss > 0, 'the QEMU process was sampled');
    assert.ok(hogRss < 128 + 256, `QEMU of the OOM guest peaked at ${hogRss.toFixed(0)} MiB (guest RAM 128 MiB)`);

    // The neighbour is still alive and still ticking.
    const ticks = (neighbour.stdout.text.match(/^tick /gm) ?? []).length;
    await waitForOutput(neighbour, new RegExp(`^tick ${ticks + 3}$`, 'm'), 'neighbour after both');
  } finally {
    await Promise.all(others.map((h) => h.kill()));
    const exit = await n.kill();
    assert.equal(exit.reason, 'killed');
  }
});
