/**
 * The guest agent in real VMs (QEMU under TCG, the busybox test image):
 * sandbox mode, exec into a command-mode VM (a service), users from the
 * image's passwd, cgroup tree kills, the identity refresh a snapshot restore
 * needs, bounded host memory under a flood (a hostile guest that takes the
 * agent's port over: agent-vm-hostile.test.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isMonocoreError, type GuestAgent, type QemuVmHandle } from '@monocore/engine';
import { backend, spec, tempDir } from './vm-fixtures.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function alive(a: GuestAgent, pid: number): Promise<boolean> {
  const r = await a.exec({ argv: ['cat', `/proc/${pid}/stat`] });
  if (r.exitCode !== 0) return false;
  const state = r.stdout.toString().replace(/^.*\) /s, '')[0];
  return state !== 'Z' && state !== 'X';
}

async function gone(a: GuestAgent, pid: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (!(await alive(a, pid))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

describe('guest agent in a sandbox VM (TCG)', () => {
  let vm: QemuVmHandle;
  let a: GuestAgent;
  before(async () => {
    vm = await backend().start(spec('agent-sbx', { sandbox: true, command: '', args: [], env: ['PATH=/bin', 'GREETING=hello'], workdir: '/tmp', ramMib: 256 }));
    await vm.started;
    a = await vm.agent();
  });
  after(async () => {
    await vm?.kill();
  });

  test('the handshake: one session, cgroups, same agent object on every call', async () => {
    assert.equal(a.info.sessions, 1);
    assert.equal(a.info.cgroups, true);
    assert.match(a.info.agentVersion, /^[0-9a-f]{12}$/);
    // The agent found its bulk lane disk by serial and opened it (O_DIRECT on virtio-blk).
    assert.deepEqual(a.info.lane, { slots: 16, slotBytes: 1024 * 1024 });
    assert.equal(await vm.agent(), a);
    assert.ok((await a.ping()) >= 0);
  });

  test('exec: defaults from the spec, env/cwd/user per exec, exit codes, 127', async () => {
    const d = await a.exec({ argv: ['sh', '-c', 'echo "$GREETING $(pwd) $(id -u)"'] });
    assert.equal(d.stdout.toString(), 'hello /tmp 0\n');
    const r = await a.exec({ argv: ['sh', '-c', 'cat; echo "$GREETING $HOME $(pwd) $(id -u):$(id -g)"; exit 4'], stdin: 'in:', env: { GREETING: 'hi' }, cwd: '/', user: 'nobody' });
    assert.equal(r.exitCode, 4);
    assert.equal(r.stdout.toString(), 'in:hi /nonexistent / 65534:65534\n');
    const n = await a.exec({ argv: ['id', '-u'], user: '1234:5678' });
    assert.equal(n.stdout.toString(), '1234\n');
    const bad = await a.exec({ argv: ['true'], user: 'nosuchuser' });
    assert.equal(bad.exitCode, 125);
    assert.match(bad.spawnError ?? '', /no such user in \/etc\/passwd/);
    assert.equal((await a.exec({ argv: ['nosuchcmd'] })).exitCode, 127);
  });

  test('5 concurrent execs, state kept between execs, signals', async () => {
    await a.writeFile('/tmp/counter', '0');
    const rs = await Promise.all([1, 2, 3, 4, 5].map((i) => a.exec({ argv: ['sh', '-c', `sleep 0.3; echo ${i} > /tmp/f${i}; echo done-${i}`] })));
    rs.forEach((r, i) => assert.equal(r.stdout.toString(), `done-${i + 1}\n`));
    const cat = await a.exec({ argv: ['sh', '-c', 'cat /tmp/f1 /tmp/f2 /tmp/f3 /tmp/f4 /tmp/f5'] });
    assert.equal(cat.stdout.toString(), '1\n2\n3\n4\n5\n');
    const p = await a.spawn({ argv: ['sleep', '100'] });
    await p.signal('SIGINT');
    assert.deepEqual(await p.exit, { exitCode: 130, signal: 2, timedOut: false });
  });

  test('background processes survive their exec; a timeout kills the whole tree through its cgroup', async () => {
    const bg = await a.exec({ argv: ['sh', '-c', 'sleep 300 >/dev/null 2>&1 & echo $!'] });
    const pid = Number(bg.stdout.toString().trim());
    assert.equal(await alive(a, pid), true);
    // setsid escapes a process group, not a cgroup
    const t = await a.exec({ argv: ['sh', '-c', 'setsid sleep 300 & echo $! > /tmp/escaper; sleep 300'], timeoutMs: 500 });
    assert.equal(t.timedOut, true);
    assert.equal(t.exitCode, 137);
    const escaper = Number((await a.exec({ argv: ['cat', '/tmp/escaper'] })).stdout.toString().trim());
    assert.equal(await gone(a, escaper), true);
    assert.equal(await alive(a, pid), true, 'another exec\'s background process is untouched');
    await a.signalPid(pid, 'SIGKILL');
  });

  test('files: binary round trip with checksum, mode and owner from the image passwd; tar both ways', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    await a.writeFile('/home/nobody/dir/blob', data, { mode: 0o640, owner: 'nobody' });
    const ls = await a.exec({ argv: ['stat', '-c', '%a %u %g', '/home/nobody/dir/blob', '/home/nobody/dir'] });
    assert.equal(ls.stdout.toString(), '640 65534 65534\n755 65534 65534\n');
    assert.equal((await a.stat('/home/nobody/dir/blob'))?.size, data.length);
    const f = await a.readFile('/home/nobody/dir/blob');
    const back: Buffer[] = [];
    for await (const c of f.body) back.push(c as Buffer);
    assert.equal(sha(Buffer.concat(back)), sha(data));
    const tar = await a.tarOut('/home/nobody');
    await a.tarIn('/srv/copy', tar);
    const cmp = await a.exec({ argv: ['cmp', '/home/nobody/dir/blob', '/srv/copy/dir/blob'] });
    assert.equal(cmp.exitCode, 0);
    // Larger than the lane, written by the guest and read back twice: no slot is ever read stale
    // from a guest page cache (the agent reads the lane O_DIRECT).
    const big = randomBytes(21 * 1024 * 1024 + 4097);
    await a.writeFile('/srv/big', big);
    const sum = await a.exec({ argv: ['sha256sum', '/srv/big'] });
    assert.equal(sum.stdout.toString().split(' ')[0], sha(big));
    await a.exec({ argv: ['sh', '-c', 'head -c 5000000 /dev/urandom > /srv/guest-made'] });
    for (const path of ['/srv/big', '/srv/guest-made', '/srv/big']) {
      const r = await a.readFile(path);
      const parts: Buffer[] = [];
      for await (const c of r.body) parts.push(c as Buffer);
      const want = (await a.exec({ argv: ['sha256sum', path] })).stdout.toString().split(' ')[0];
      assert.equal(sha(Buffer.concat(parts)), want, path);
    }
    assert.equal((a as { laneSlotsFree?: number }).laneSlotsFree, 16, 'every lane slot came back');
    await assert.rejects(a.readFile('/nope'), (e) => isMonocoreError(e, 'MC_AGENT_FILE_NOT_FOUND'));
  });

  test('the lane file is never reopened by path: swapped for a symlink before the handshake (its directory is QEMU\'s uid\'s), it reaches no host file', async () => {
    const vm2 = await backend().start(spec('agent-lane-swap', { sandbox: true, command: '', args: [], env: ['PATH=/bin'], ramMib: 256 }));
    try {
      // Find the lane file through QEMU's open fds, as a QEMU taken over by its guest could, and
      // point its name at a host file big enough to pass for a lane.
      const fds = readdirSync(`/proc/${vm2.pid}/fd`).map((fd) => { try { return readlinkSync(`/proc/${vm2.pid}/fd/${fd}`); } catch { return ''; } });
      const lanePath = fds.find((l) => l.endsWith('/lane.img'));
      assert.ok(lanePath, `QEMU holds the lane file (${fds.join(', ')})`);
      const canary = join(tempDir('lane-canary'), 'host-file');
      const original = Buffer.alloc(16 * 1024 * 1024, 0x5a);
      writeFileSync(canary, original);
      renameSync(lanePath, `${lanePath}.moved`);
      symlinkSync(canary, lanePath);
      await vm2.started;
      const a2 = await vm2.agent();
      assert.deepEqual(a2.info.lane, { slots: 16, slotBytes: 1024 * 1024 });
      const data = randomBytes(3 * 1024 * 1024 + 5);
      await a2.writeFile('/srv/after-swap', data);
      const f = await a2.readFile('/srv/after-swap');
      const parts: Buffer[] = [];
      for await (const c of f.body) parts.push(c as Buffer);
      assert.equal(sha(Buffer.concat(parts)), sha(data), 'transfers go through the file the worker opened before QEMU ran');
      assert.equal(sha(readFileSync(canary)), sha(original), 'the symlink target was never written');
    } finally {
      await vm2.kill();
    }
  });

  test('a pty in the guest', async () => {
    const p = await a.spawn({ argv: ['sh'], pty: { cols: 100, rows: 30 } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stdin!.write('stty size; exit 3\n');
    assert.equal((await p.exit).exitCode, 3);
    assert.match(out, /30 100/);
  });

  test('a flood of output reaches the host complete, with bounded buffering', async () => {
    const total = 32 * 1024 * 1024;
    const p = await a.spawn({ argv: ['head', '-c', String(total), '/dev/zero'] });
    let got = 0;
    let maxHeld = 0;
    const out = p.stdout as typeof p.stdout & { held: number };
    p.stdout.on('data', (d: Buffer) => {
      got += d.length;
      maxHeld = Math.max(maxHeld, out.held + p.stdout.readableLength);
    });
    assert.equal((await p.exit).exitCode, 0);
    await new Promise((r) => (p.stdout.readableEnded ? r(null) : p.stdout.once('end', r)));
    assert.equal(got, total);
    assert.ok(maxHeld <= 256 * 1024 + 65536, `${maxHeld} bytes held on the host`);
  });

  test('refresh: hostname, env, wall clock and a reseeded random pool', async () => {
    const r = await a.refresh({ hostname: 'sbx-renamed', env: ['PATH=/bin', 'GREETING=renamed'], clock: new Date('2031-05-06T07:08:09Z') });
    assert.equal(r.entropyBits, 512);
    assert.ok(r.clockStepMs > 1e9, `clock step ${r.clockStepMs}`);
    const e = await a.exec({ argv: ['sh', '-c', 'hostname; cat /etc/hostname; grep sbx-renamed /etc/hosts; echo $GREETING; date -u +%Y'] });
    assert.equal(e.stdout.toString(), 'sbx-renamed\nsbx-renamed\n127.0.1.1\tsbx-renamed\nrenamed\n2031\n');
    await a.refresh(); // the host's clock again
    const y = await a.exec({ argv: ['date', '-u', '+%Y'] });
    assert.equal(y.stdout.toString(), `${new Date().getUTCFullYear()}\n`);
  });

  test('stop() ends a sandbox cleanly: exit 0, reason stopped; the agent session ends', async () => {
    const ended = a.closed;
    const exit = await vm.stop({ timeoutMs: 20_000 });
    assert.deepEqual(exit, { exitCode: 0, reason: 'stopped' });
    assert.equal((await ended).code, 'MC_AGENT_DISCONNECTED');
    await assert.rejects(vm.agent(), (e) => isMonocoreError(e, 'MC_AGENT_DISCONNECTED'));
  });
});

describe('guest agent in a command-mode VM (a service)', () => {
  test('exec into a running service: its env, workdir and user are the defaults; the service itself is unchanged', async () => {
    const s = spec('agent-svc', { command: '/bin/sh', args: ['-c', 'echo started; sleep 300'], env: ['PATH=/bin', 'SVC=yes'], workdir: '/etc', user: 'nobody' });
    const vm = await backend().start(s);
    try {
      await vm.started;
      const a = await vm.agent();
      const r = await a.exec({ argv: ['sh', '-c', 'echo "$SVC $(pwd) $(id -un)"'] });
      assert.equal(r.stdout.toString(), 'yes /etc nobody\n');
      const exit = await vm.stop({ timeoutMs: 20_000 });
      assert.equal(exit.reason, 'stopped');
      assert.equal(exit.exitCode, 143);
      assert.equal(s.stdout.text, 'started\n');
    } finally {
      await vm.kill();
    }
  });
});
