/**
 * No orphan hypervisor: SIGKILL the supervising Node process and its QEMU must
 * die too (setpriv --pdeathsig KILL); the leftover pid record is cleaned by
 * cleanupOrphans(), which leaves live supervisors' VMs alone.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cleanupOrphans, MonocoreHome } from '@monocore/engine';
import { kernelDir, tempDir, testRootfs } from './vm-fixtures.js';

/** Alive = exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

test('no orphan QEMU survives a SIGKILLed supervisor; cleanupOrphans removes its record', async () => {
  const home = new MonocoreHome(tempDir('orphan-home'));
  const stateDir = tempDir('orphan-state');
  const script = join(fileURLToPath(new URL('.', import.meta.url)), 'orphan-supervisor.js');
  const sup = spawn(process.execPath, [script, JSON.stringify({ home: home.root, kernelDir: kernelDir(), rootfs: testRootfs(), stateDir })], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      sup.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        if (buf.includes('\n')) resolve(buf.split('\n')[0]!);
      });
      sup.once('exit', (code) => reject(new Error(`supervisor exited early (${code})`)));
    });
    const qemuPid = (JSON.parse(line) as { pid: number }).pid;
    assert.ok(alive(qemuPid), 'QEMU runs');
    const records = readdirSync(home.runDir).filter((f) => f.endsWith('.json'));
    assert.equal(records.length, 1, 'one pid record under runDir');

    // A live supervisor's VM is not touched by another process's cleanup.
    const kept = cleanupOrphans(home);
    assert.equal(kept.kept, 1);
    assert.ok(alive(qemuPid));

    sup.kill('SIGKILL');
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      await new Promise((r) => setTimeout(r, 100));
      gone = !alive(qemuPid);
    }
    assert.ok(gone, `QEMU ${qemuPid} died with its supervisor`);
    const cleaned = cleanupOrphans(home);
    assert.equal(cleaned.removed + cleaned.killed.length, 1);
    assert.equal(readdirSync(home.runDir).filter((f) => f.endsWith('.json')).length, 0, 'record removed');
    assert.equal(existsSync(join(stateDir, 'upper.ext4')), true, 'the service disk is kept (only remove deletes it)');
  } finally {
    sup.kill('SIGKILL');
    rmSync(home.root, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('cleanupOrphans removes a dead supervisor\'s spare with its own dir (its disk until adopted)', () => {
  const home = new MonocoreHome(tempDir('orphan-spare-home'));
  try {
    const spareDir = join(home.root, 'spares', 'spare-0123456789ab');
    mkdirSync(spareDir, { recursive: true });
    writeFileSync(join(spareDir, 'upper.ext4'), 'disk');
    const keptDir = join(home.root, 'spares', 'spare-live');
    mkdirSync(keptDir, { recursive: true });
    // Pids that cannot be alive: the record's process and its supervisor are both gone.
    mkdirSync(home.runDir, { recursive: true });
    const rec = { id: 'spare-0123456789ab', pid: 0x3ffffff0, startTime: '1', supervisorPid: 0x3ffffff1, supervisorStartTime: '1', backend: 'qemu' };
    writeFileSync(join(home.runDir, `vm-${rec.id}-${rec.pid}.json`), JSON.stringify(rec));
    const cleaned = cleanupOrphans(home);
    assert.equal(cleaned.removed, 1);
    assert.equal(existsSync(spareDir), false, 'the spare\'s dir went with its record');
    assert.equal(existsSync(keptDir), true, 'a dir without a dead record is not touched');
  } finally {
    rmSync(home.root, { recursive: true, force: true });
  }
});
