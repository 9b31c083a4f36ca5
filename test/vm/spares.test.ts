/**
 * Spares (docs/SNAPSHOTS.md "Spares") with real VMs under TCG: once a sandbox started from its
 * template, the backend restores the next VM of that shape ahead of the request and leaves it
 * stopped; the next sandbox adopts it and is itself in every way (identity, disk, clock, random
 * pool, pid record). A spare that died or whose template went is never adopted; a spare does not
 * keep its image in use; close() leaves no process, file or record behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { imageRootfsIdsInUse, type GuestAgent, type MonocoreHome, type QemuBackend, type QemuVmHandle, type VmSpec } from '@monocore/engine';
import { assertGuestClock } from '../support/guest-probes.js';
import { backend, imageStoreHome, startWithAgent, templateSandbox } from './vm-fixtures.js';

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));

describe('spares: a sandbox restore made ahead of the request (TCG)', () => {
  let home: MonocoreHome;
  let qemu: QemuBackend;
  let rootfs: string;
  let imageId: string;
  const vms: QemuVmHandle[] = [];
  const sandbox = (id: string, over: Partial<VmSpec> = {}): VmSpec => templateSandbox(rootfs, id, over);
  const start = (s: VmSpec): Promise<{ vm: QemuVmHandle; a: GuestAgent }> => startWithAgent(qemu, vms, s);
  /** The ready spare (waits for one: it is made ~0.2 s after a start of its shape, then loads). */
  const readySpare = async (): Promise<{ id: string; pid: number; template: string }> => {
    for (let i = 0; i < 600; i++) {
      const s = qemu.readySpares[0];
      if (s) return s;
      await sleep(100);
    }
    throw new Error('no spare became ready within 60 s');
  };
  const records = (): string[] => readdirSync(home.runDir).filter((n) => /^vm-.*\.json$/.test(n)).sort();
  const random = async (a: GuestAgent): Promise<string> => (await a.exec({ argv: ['sh', '-c', 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"'] })).stdout.toString();

  before(async () => {
    ({ home, rootfs, imageId } = await imageStoreHome('sparehome'));
    qemu = backend({ home, spares: 1 });
  });
  after(async () => {
    for (const vm of vms) await vm.kill().catch(() => undefined);
    await qemu.close();
  });

  test('the next sandbox adopts the spare: its own identity, disk, clock, random pool and pid record', async () => {
    const first = await start(sandbox('sp-a'));
    assert.equal(first.vm.boot.from, 'cold');
    await first.a.exec({ argv: ['sh', '-c', 'echo a > /tmp/mine'] });
    const spare = await readySpare();
    assert.ok(alive(spare.pid));
    const cmdline = readFileSync(`/proc/${spare.pid}/cmdline`, 'utf8');
    assert.ok(cmdline.includes(join(home.root, 'spares', spare.id)), 'its disk lives in its own dir until adopted');
    assert.ok(records().some((n) => n.startsWith(`vm-${spare.id}-${spare.pid}`)), `a pid record, so a restarted worker reaps it: ${records().join(' ')}`);

    const sent = Date.now();
    const second = await start(sandbox('sp-b', { user: 'nobody', workdir: '/' }));
    assert.equal(second.vm.boot.from, 'template');
    assert.match(second.vm.boot.reason, new RegExp(`restored ahead of this start \\(${spare.id}`));
    assert.equal(second.vm.pid, spare.pid, 'the spare\'s QEMU is this VM');
    const out = await second.a.exec({ argv: ['sh', '-c', 'echo "$WHO $(hostname) $(pwd) $(id -u)"; ls /tmp/mine 2>&1; date +%s'] });
    const replied = Date.now();
    const [who, mine, clock] = out.stdout.toString().trim().split('\n');
    assert.equal(who, 'sp-b sp-b / 65534');
    assert.match(mine ?? '', /No such file/, 'the first sandbox\'s files are its own');
    assertGuestClock(clock ?? '', sent, replied);
    assert.notEqual(await random(second.a), await random(first.a), 'its random pool was reseeded');

    // Everything of the spare is the VM's now: its disk in the VM's state dir, its pid record under the VM's id.
    const stateDir = join(tempDirOf(second.vm), '');
    assert.ok(existsSync(join(stateDir, 'upper.ext4')));
    assert.ok(!existsSync(join(home.root, 'spares', spare.id)), 'the spare\'s dir is gone');
    assert.ok(records().some((n) => n === `vm-sp-b-${spare.pid}.json`), records().join(' '));
    assert.ok(!records().some((n) => n.startsWith(`vm-${spare.id}-`)), records().join(' '));
    await second.a.exec({ argv: ['sh', '-c', 'echo b > /tmp/b-file && sync'] });
    assert.equal((await second.a.exec({ argv: ['cat', '/tmp/b-file'] })).stdout.toString(), 'b\n');

    // And another spare is on its way for the next one.
    const next = await readySpare();
    assert.notEqual(next.id, spare.id);
  });

  test('a spare does not keep its image in use; an adopted one does', async () => {
    for (const vm of vms.splice(0)) await vm.kill();
    const spare = await readySpare();
    assert.ok(alive(spare.pid));
    assert.ok(!(await imageRootfsIdsInUse(home)).has(imageId), 'only a spare holds the image: not in use');
    const vm = await start(sandbox('sp-c'));
    assert.equal(vm.vm.pid, spare.pid);
    assert.ok((await imageRootfsIdsInUse(home)).has(imageId), 'the adopted spare is a VM using the image');
  });

  test('a spare that died, or whose template was removed, is not adopted: the start restores as usual', async () => {
    let spare = await readySpare();
    process.kill(spare.pid, 'SIGKILL');
    for (let i = 0; i < 100 && qemu.readySpares.some((s) => s.id === spare.id); i++) await sleep(50);
    assert.ok(!qemu.readySpares.some((s) => s.id === spare.id), 'a dead spare leaves the pool');
    assert.ok(!existsSync(join(home.root, 'spares', spare.id)), 'and its dir');
    const d = await start(sandbox('sp-d'));
    assert.equal(d.vm.boot.from, 'template');
    assert.doesNotMatch(d.vm.boot.reason, /restored ahead/);
    assert.equal((await d.a.exec({ argv: ['hostname'] })).stdout.toString(), 'sp-d\n');

    spare = await readySpare();
    const [t] = readdirSync(qemu.templates.templatesDir(imageId)).filter((n) => /^[0-9a-f]{32}$/.test(n));
    await qemu.templates.remove({ dir: join(qemu.templates.templatesDir(imageId), t!) });
    const e = await start(sandbox('sp-e'));
    assert.notEqual(e.vm.pid, spare.pid, 'a spare of a removed template is never adopted');
    assert.equal(e.vm.boot.from, 'cold');
    assert.ok(!alive(spare.pid), 'it was discarded');
    assert.equal((await e.a.exec({ argv: ['hostname'] })).stdout.toString(), 'sp-e\n');
  });

  test('an adopted VM pauses, resumes and forks like any other', async () => {
    const spare = await readySpare();
    const s = sandbox('sp-f');
    const f = await start(s);
    assert.equal(f.vm.pid, spare.pid);
    await f.a.exec({ argv: ['sh', '-c', 'echo kept > /tmp/kept && sync'] });
    const [child] = await qemu.fork(f.vm, [sandbox('sp-f-child')]);
    vms.push(child!);
    const c = await child!.agent();
    assert.equal((await c.exec({ argv: ['cat', '/tmp/kept'] })).stdout.toString(), 'kept\n');
    assert.equal((await c.exec({ argv: ['hostname'] })).stdout.toString(), 'sp-f-child\n');
    await qemu.pause(f.vm);
    assert.ok(!alive(spare.pid), 'paused: its QEMU is gone');
    const resumed = await qemu.resume(s);
    vms.push(resumed);
    assert.equal(resumed.boot.from, 'paused');
    const r = await resumed.agent();
    assert.equal((await r.exec({ argv: ['sh', '-c', 'cat /tmp/kept; hostname'] })).stdout.toString(), 'kept\nsp-f\n');
  });

  test('close() ends every spare and leaves no process, dir or pid record', async () => {
    const spare = await readySpare();
    await qemu.close();
    assert.ok(!alive(spare.pid));
    assert.deepEqual(readdirSync(join(home.root, 'spares')), []);
    assert.ok(!records().some((n) => n.startsWith('vm-spare-')), records().join(' '));
    assert.deepEqual(qemu.readySpares, []);
  });
});

/** A VM's state dir, from its console log's path. */
function tempDirOf(vm: QemuVmHandle): string {
  return vm.consoleLog.replace(/\/console\.log$/, '');
}
