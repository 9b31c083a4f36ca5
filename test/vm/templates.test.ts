/**
 * VM templates (docs/SNAPSHOTS.md) with real VMs under TCG: the first sandbox of an image
 * boots cold and saves the template; the next ones are restored from it, each with its own
 * identity (hostname, env, workdir, user, clock, random pool) and its own writable disk; a
 * corrupted or truncated state file is never restored (cold boot, template replaced); a
 * cold boot can be forced; concurrent first starts build the template once.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, statSync, truncateSync, openSync, writeSync, closeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { outboundNetwork, type GuestAgent, type MonocoreHome, type QemuBackend, type QemuVmHandle, type VmSpec } from '@monocore/engine';
import { assertGuestClock, counterValue, START_COUNTER } from '../support/guest-probes.js';
import { backend, imageStoreHome, spec, startWithAgent, templateSandbox } from './vm-fixtures.js';

describe('templates: restore instead of boot (TCG)', () => {
  let home: MonocoreHome;
  let qemu: QemuBackend;
  let rootfs: string;
  const vms: QemuVmHandle[] = [];
  const sandbox = (id: string, over: Partial<VmSpec> = {}): VmSpec => templateSandbox(rootfs, id, over);
  const start = (s: VmSpec): Promise<{ vm: QemuVmHandle; a: GuestAgent }> => startWithAgent(qemu, vms, s);
  /** The files behind a running QEMU's -kernel and -initrd (/proc/self/fd/N), by name. */
  const bootFiles = (vm: QemuVmHandle): string[] => {
    const argv = readFileSync(`/proc/${vm.pid}/cmdline`, 'utf8').split('\0');
    return ['-kernel', '-initrd'].map((flag) => {
      const fd = /^\/proc\/self\/fd\/(\d+)$/.exec(argv[argv.indexOf(flag) + 1] ?? '')?.[1];
      assert.ok(fd, `${flag} ${argv[argv.indexOf(flag) + 1]}`);
      return basename(readlinkSync(`/proc/${vm.pid}/fd/${fd}`)).replace(/^initramfs-[0-9a-f]+\.cpio$/, 'initramfs-*.cpio');
    });
  };
  const templateDirs = (): string[] => readdirSync(qemu.templates.templatesDir(imageId)).filter((n) => /^[0-9a-f]{32}$/.test(n));
  let imageId: string;

  before(async () => {
    ({ home, rootfs, imageId } = await imageStoreHome('tplhome'));
    qemu = backend({ home });
  });
  after(async () => {
    for (const vm of vms) await vm.kill().catch(() => undefined);
  });

  test('the first sandbox boots cold and saves the template; the next is restored with its own identity and disk', async () => {
    const first = await start(sandbox('tpl-a'));
    assert.equal(first.vm.boot.from, 'cold');
    assert.match(first.vm.boot.reason, /saved template [0-9a-f]{32}/);
    // The VM that saved the template carries on as itself.
    const fa = await first.a.exec({ argv: ['sh', '-c', 'echo "$WHO $(hostname) $(pwd)"; echo a-was-here > /tmp/mine'] });
    assert.equal(fa.stdout.toString(), 'tpl-a tpl-a /tmp\n');
    assert.equal(templateDirs().length, 1);
    // The template's key has QEMU's version, asked once and remembered for this binary (qemu-version.ts).
    assert.match(readFileSync(join(home.runDir, 'qemu-version.json'), 'utf8'), /QEMU emulator version/);

    const second = await start(sandbox('tpl-b', { user: 'nobody', workdir: '/' }));
    assert.equal(second.vm.boot.from, 'template', second.vm.boot.reason);
    // The cold boot's QEMU loaded the real kernel and initramfs; the restore's only the stub ones.
    assert.deepEqual(bootFiles(first.vm), ['vmlinux', 'initramfs-*.cpio']);
    assert.deepEqual(bootFiles(second.vm), ['restore-stub-vmlinux', 'restore-stub-initrd']);
    const sentB = Date.now();
    const b = await second.a.exec({ argv: ['sh', '-c', 'echo "$WHO $(hostname) $(pwd) $(id -u)"; cat /etc/hostname; ls /tmp/mine 2>&1; date +%s'] });
    const repliedB = Date.now();
    const [who, host, mine, clock] = b.stdout.toString().trim().split('\n');
    assert.equal(who, 'tpl-b tpl-b / 65534');
    assert.equal(host, 'tpl-b');
    assert.match(mine ?? '', /No such file/, 'a file written by the first sandbox after the save is not in the second');
    assertGuestClock(clock ?? '', sentB, repliedB);
    // Writes stay each sandbox's own.
    await second.a.exec({ argv: ['sh', '-c', 'echo b > /tmp/b-only'] });
    assert.equal((await first.a.exec({ argv: ['ls', '/tmp/b-only'] })).exitCode, 1);
  });

  test('two restores of one template produce different random bytes', async () => {
    const [x, y] = await Promise.all([start(sandbox('tpl-r1')), start(sandbox('tpl-r2'))]);
    assert.equal(x.vm.boot.from, 'template');
    assert.equal(y.vm.boot.from, 'template');
    const read = async (a: GuestAgent): Promise<string> => (await a.exec({ argv: ['sh', '-c', 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"'] })).stdout.toString();
    const [rx, ry] = await Promise.all([read(x.a), read(y.a)]);
    assert.equal(rx.length, 64);
    assert.notEqual(rx, ry);
  });

  test('a corrupted state file is never restored: the VM boots cold and the template is made again', async () => {
    const [dir] = templateDirs();
    const state = join(qemu.templates.templatesDir(imageId), dir!, 'state.bin');
    const size = statSync(state).size;
    const fd = openSync(state, 'r+');
    writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, Math.floor(size / 2));
    closeSync(fd);
    const c = await start(sandbox('tpl-corrupt'));
    assert.equal(c.vm.boot.from, 'cold');
    assert.match(c.vm.boot.reason, /restoring template .* failed, template deleted: .*sha256/);
    assert.match(c.vm.boot.reason, /saved template/);
    assert.equal((await c.a.exec({ argv: ['sh', '-c', 'echo $WHO'] })).stdout.toString(), 'tpl-corrupt\n');

    // A corrupted header: QEMU exits before its monitor answers. The file's hash is still the reason given.
    const head = openSync(join(qemu.templates.templatesDir(imageId), templateDirs()[0]!, 'state.bin'), 'r+');
    writeSync(head, Buffer.alloc(4096, 0xa5), 0, 4096, 0);
    closeSync(head);
    const h = await start(sandbox('tpl-head'));
    assert.equal(h.vm.boot.from, 'cold');
    assert.match(h.vm.boot.reason, /restoring template .* failed, template deleted: .*sha256/);

    truncateSync(join(qemu.templates.templatesDir(imageId), templateDirs()[0]!, 'state.bin'), 1000);
    const t = await start(sandbox('tpl-trunc'));
    assert.equal(t.vm.boot.from, 'cold');
    assert.match(t.vm.boot.reason, /1000 bytes/);
    assert.equal((await start(sandbox('tpl-after'))).vm.boot.from, 'template');
  });

  test('pause saves the VM and ends QEMU; resume (by another backend, as after a worker restart) continues its processes, files and clock', async () => {
    const spec0 = sandbox('tpl-pause');
    const { vm, a } = await start(spec0);
    // A background counter, left running after its exec returns.
    await a.exec({ argv: ['sh', '-c', `echo keep > /tmp/kept; ${START_COUNTER}`] });
    await new Promise((r) => setTimeout(r, 1500));
    const before = counterValue((await a.exec({ argv: ['cat', '/tmp/count'] })).stdout.toString());
    const paused = await qemu.pause(vm);
    assert.ok(paused.state.bytes > 0);
    const exit = await vm.wait();
    assert.equal(exit.reason, 'killed');
    assert.throws(() => process.kill(vm.pid, 0), /ESRCH/, 'no QEMU process while paused');
    await new Promise((r) => setTimeout(r, 3000)); // paused for a while: the guest clock must not lag after
    const again = backend({ home }); // a new backend (a restarted worker) resumes it
    const resumed = await again.resume({ ...spec0 });
    vms.push(resumed);
    assert.equal(resumed.boot.from, 'paused');
    const b = await resumed.agent();
    await new Promise((r) => setTimeout(r, 1000));
    const sent = Date.now();
    const r = await b.exec({ argv: ['sh', '-c', 'cat /tmp/count /tmp/kept; date +%s'] });
    const replied = Date.now();
    const [count, kept, clock] = r.stdout.toString().trim().split('\n');
    assert.ok(counterValue(count ?? '') > before, `the counter went on: ${before} → ${count}`);
    assert.equal(kept, 'keep');
    assertGuestClock(clock ?? '', sent, replied);
    assert.equal(b.info.sessions, a.info.sessions + 1, 'the same agent process, a new session');
    await assert.rejects(again.resume({ ...spec0 }), (e: unknown) => e instanceof Error && /no paused VM/.test(e.message), 'the paused state is spent');
  });

  test('fork: children continue the parent\'s processes and files; writes after the fork are each one\'s own; random bytes differ', async () => {
    const { vm, a } = await start(sandbox('tpl-parent'));
    await a.exec({ argv: ['sh', '-c', `echo before > /tmp/shared; ${START_COUNTER}`] });
    await new Promise((r) => setTimeout(r, 1000));
    const children = await qemu.fork(vm, [sandbox('tpl-child1'), sandbox('tpl-child2')]);
    vms.push(...children);
    const agents = await Promise.all(children.map((c) => c.agent()));
    for (const c of children) assert.equal(c.boot.from, 'fork');
    assert.match(children[0]!.boot.reason, /forked from tpl-parent \(parent paused \d+ ms\)/);
    const all = [a, ...agents];
    const counts0 = await Promise.all(all.map(async (x) => counterValue((await x.exec({ argv: ['cat', '/tmp/count'] })).stdout.toString())));
    await new Promise((r) => setTimeout(r, 1500));
    const counts1 = await Promise.all(all.map(async (x) => counterValue((await x.exec({ argv: ['cat', '/tmp/count'] })).stdout.toString())));
    all.forEach((_, i) => assert.ok(counts1[i]! > counts0[i]!, `the counter keeps counting in ${i === 0 ? 'the parent' : `child ${i}`}: ${counts0[i]} → ${counts1[i]}`));
    for (const x of agents) {
      const r = await x.exec({ argv: ['sh', '-c', 'cat /tmp/shared; hostname; echo $WHO'] });
      assert.match(r.stdout.toString(), /^before\ntpl-child\d\ntpl-child\d\n$/, 'the file written before the fork is there; identity is the child\'s');
    }
    await agents[0]!.exec({ argv: ['sh', '-c', 'echo child1 > /tmp/after'] });
    assert.equal((await agents[1]!.exec({ argv: ['ls', '/tmp/after'] })).exitCode, 1, 'a write in one child is not in the other');
    assert.equal((await a.exec({ argv: ['ls', '/tmp/after'] })).exitCode, 1, 'nor in the parent');
    const rnd = await Promise.all(all.map(async (x) => (await x.exec({ argv: ['sh', '-c', 'head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"'] })).stdout.toString()));
    assert.equal(new Set(rnd).size, 3, `random bytes differ: ${rnd.join(' ')}`);
  });

  test('outbound network: a sandbox restored from a template gets its own egress address, route and resolver', async () => {
    // With an allow-list the guest's resolver is its gateway (monocore's resolver, docs/NETWORK.md):
    // a name off the list is refused by it at once, which proves the path works without any traffic leaving.
    const net = outboundNetwork('tpl-net', ['allowed.test']);
    const first = await start(sandbox('tpl-net1', { network: net }));
    const second = await start(sandbox('tpl-net2', { network: outboundNetwork('tpl-net2', ['allowed.test']) }));
    assert.equal(second.vm.boot.from, 'template', second.vm.boot.reason);
    const probe = 'dev=$(ip route | awk \'/^default/ {print $5}\'); ip -4 -o addr show $dev | awk \'{print $4}\'; ip route | awk \'/^default/ {print $3}\'; awk \'/^nameserver/ {print $2}\' /etc/resolv.conf; nslookup refused.test 2>&1 | grep -c "timed out"; hostname';
    const [a1, a2] = await Promise.all([first.a, second.a].map(async (x) => (await x.exec({ argv: ['sh', '-c', probe] })).stdout.toString().trim().split('\n')));
    assert.notEqual(a1![0], a2![0], `each has its own egress address: ${a1![0]} / ${a2![0]}`);
    for (const [lines, host] of [[a1!, 'tpl-net1'], [a2!, 'tpl-net2']] as const) {
      const [, gw, ns, timedOut, name] = lines;
      assert.equal(ns, gw, 'the resolver is its own gateway');
      assert.equal(timedOut, '0', 'the resolver answered (no timeout)');
      assert.equal(name, host);
    }
  });

  // Commands (`monocore run`, services) start from the same sandbox template: init gets the
  // command after REFRESH (`main` message) and runs it as if it had booted with it.
  const command = (id: string, argv: string[], over: Partial<VmSpec> = {}): ReturnType<typeof spec> =>
    spec(id, { rootfs, command: argv[0]!, args: argv.slice(1), env: ['PATH=/bin', `WHO=${id}`], workdir: '/tmp', ramMib: 256, diskMib: 256, ...over });
  const runToEnd = async (s: ReturnType<typeof spec>): Promise<{ vm: QemuVmHandle; code: number | null; reason: string; out: string; err: string }> => {
    const vm = await qemu.start(s);
    vms.push(vm);
    const exit = await vm.wait();
    return { vm, code: exit.exitCode, reason: exit.reason, out: s.stdout.text, err: s.stderr.text };
  };

  test('a command restored from the sandbox template runs with its own argv, env, workdir and user: output and exit code as when booted cold', async () => {
    const argv = ['sh', '-c', 'echo "$WHO $(hostname) $(pwd) $(id -u) [$1] [$2] $#"; echo to-stderr >&2; exit 7', 'sh', 'a  b', ''];
    const over = { user: 'nobody', workdir: '/etc', env: ['PATH=/bin', 'WHO=cmd'] };
    const warm = await runToEnd(command('tpl-cmd', argv, over));
    assert.equal(warm.vm.boot.from, 'template', warm.vm.boot.reason);
    assert.ok(warm.vm.timings.guestUpMs! > 0 && warm.vm.timings.startedMs! >= warm.vm.timings.guestUpMs!, JSON.stringify(warm.vm.timings));
    const cold = await runToEnd(command('tpl-cmd', argv, { ...over, coldBoot: true }));
    assert.equal(cold.vm.boot.from, 'cold');
    for (const r of [warm, cold]) {
      assert.equal(r.out, 'cmd tpl-cmd /etc 65534 [a  b] [] 2\n');
      assert.equal(r.err, 'to-stderr\n');
      assert.equal(r.code, 7);
      assert.equal(r.reason, 'exited');
    }
  });

  test('a missing command from a template fails as it does cold: 127 and the same message', async () => {
    const warm = await runToEnd(command('tpl-missing', ['/no/such/thing']));
    assert.equal(warm.vm.boot.from, 'template', warm.vm.boot.reason);
    const cold = await runToEnd(command('tpl-missing', ['/no/such/thing'], { coldBoot: true }));
    for (const r of [warm, cold]) {
      assert.equal(r.code, 127);
      assert.match(r.err, /exec \/no\/such\/thing: No such file or directory/);
    }
    await assert.rejects(warm.vm.started, /did not start.*exit code 127/);
  });

  test('the first command of a VM shape boots cold, saves the sandbox template, then runs; a sandbox of that shape is restored from it', async () => {
    const n = templateDirs().length;
    const first = await runToEnd(command('tpl-cmd-first', ['sh', '-c', 'echo "$WHO"; exit 3'], { ramMib: 288 }));
    assert.equal(first.vm.boot.from, 'cold');
    assert.match(first.vm.boot.reason, /saved template [0-9a-f]{32}/);
    assert.equal(first.out, 'tpl-cmd-first\n');
    assert.equal(first.code, 3);
    assert.equal(templateDirs().length, n + 1);
    const sb = await start(sandbox('tpl-cmd-sb', { ramMib: 288 }));
    assert.equal(sb.vm.boot.from, 'template', sb.vm.boot.reason);
  });

  test('a service from a template takes execs with its env, stops gracefully, and restarts cold on its kept disk', async () => {
    const svcSpec = (): ReturnType<typeof spec> =>
      command('tpl-svc', ['sh', '-c', 'trap "echo bye; exit 42" TERM; echo up; [ -f /srv-mark ] && echo kept; echo mark > /srv-mark; while true; do sleep 0.1; done'], { env: ['PATH=/bin', 'ROLE=web'] });
    const s1 = svcSpec();
    const vm = await qemu.start(s1);
    vms.push(vm);
    assert.equal(vm.boot.from, 'template', vm.boot.reason);
    await vm.started;
    await s1.stdout.until(/up\n/);
    const a = await vm.agent();
    assert.equal((await a.exec({ argv: ['sh', '-c', 'echo "$ROLE $(hostname)"'] })).stdout.toString(), 'web tpl-svc\n');
    const exit = await vm.stop({ timeoutMs: 20_000 });
    assert.deepEqual([exit.exitCode, exit.reason], [42, 'stopped']);
    assert.match(s1.stdout.text, /bye/);
    // Restart with the same state dir: its disk is kept, so no template (the template's memory has its own disk mounted).
    const s2 = { ...svcSpec(), stateDir: s1.stateDir };
    const again = await qemu.start(s2);
    vms.push(again);
    assert.equal(again.boot.from, 'cold');
    assert.match(again.boot.reason, /writable disk from an earlier run/);
    await again.started;
    await s2.stdout.until(/kept\n/);
    await again.kill();
  });

  test('group members share one template: the second is restored from the first one\'s, gets its own MAC and address, and reaches the first by name', async () => {
    const net = (address: string, peer: string, peerAddress: string): VmSpec['network'] => ({ mode: 'group', group: 'tplg', address, peers: { [peer]: peerAddress }, localOnly: true });
    const a = command('tpl-ga', ['sh', '-c', 'mkdir -p /www && echo page-of-a > /www/index.html && httpd -p 80 -h /www && echo ready && while :; do sleep 1; done'], {
      network: net('10.89.0.2/24', 'tpl-gb', '10.89.0.3'),
    });
    const va = await qemu.start(a);
    vms.push(va);
    await va.started;
    assert.equal(va.boot.from, 'cold');
    assert.match(va.boot.reason, /saved template/, 'the first group member of this shape saves the template');
    await a.stdout.until(/ready\n/);
    const probe = 'ip -o link show eth0 | grep -o "link/ether [0-9a-f:]*"; ip -o -4 addr show eth0 | grep -o "inet [0-9./]*"; for i in 1 2 3 4 5 6 7 8; do if ping -c 1 -W 1 tpl-ga >/dev/null 2>&1; then timeout 10 wget -q -O - http://tpl-ga/; exit $?; fi; done; echo unreachable; exit 3';
    const b = await runToEnd(command('tpl-gb', ['sh', '-c', probe], { network: net('10.89.0.3/24', 'tpl-ga', '10.89.0.2') }));
    assert.equal(b.vm.boot.from, 'template', b.vm.boot.reason);
    assert.equal(b.code, 0, `${b.out}${b.err}`);
    assert.equal(b.out, 'link/ether 52:54:0a:59:00:03\ninet 10.89.0.3/24\npage-of-a\n', 'its own MAC and address, and the first member by name');
    await va.kill();
  });

  test('--cold boots the kernel; another VM shape gets a template of its own', async () => {
    const n = templateDirs().length;
    const c = await start(sandbox('tpl-cold', { coldBoot: true }));
    assert.equal(c.vm.boot.from, 'cold');
    assert.match(c.vm.boot.reason, /cold boot was asked for/);
    assert.equal(templateDirs().length, n);
    const big = await start(sandbox('tpl-ram', { ramMib: 320 }));
    assert.equal(big.vm.boot.from, 'cold');
    assert.equal(templateDirs().length, n + 1);
  });
});
