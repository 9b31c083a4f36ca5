/** `monocore run` and `monocore doctor` end to end: the real CLI, registry, image pull and VM. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { kernelDir, tempDir } from './vm-fixtures.js';

const cli = fileURLToPath(new URL('../../../apps/cli/dist/main.js', import.meta.url));

function image(): string {
  const v = process.env.MONOCORE_TEST_IMAGE;
  if (!v) throw new Error('MONOCORE_TEST_IMAGE is not set: run `bash scripts/test-services.sh start && . .monocore-test/env.sh`');
  return v;
}

function mc(home: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: kernelDir() },
    timeout: 180_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('monocore run: pulls, streams stdout/stderr apart, exits with the command code, keeps nothing', async () => {
  const home = tempDir('cli-home');
  const vol = tempDir('cli-vol');
  writeFileSync(join(vol, 'greeting'), 'hi from a volume');
  try {
    const r = mc(home, ['run', '-q', '--cpus', '1', '--ram', '256', '-e', 'WHO=the guest', '-v', `${vol}:/data`, '-w', '/data', image(), '--',
      'sh', '-c', 'cat greeting; echo; echo "$WHO in $(pwd) with PATH=$PATH"; echo oops >&2; exit 7']);
    assert.equal(r.status, 7, r.stderr);
    // PATH comes from the image config, WHO from -e, the workdir from -w.
    assert.equal(r.stdout, 'hi from a volume\nthe guest in /data with PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
    assert.equal(r.stderr, 'oops\n');
    assert.deepEqual(readdirSync(join(home, 'tmp')).filter((f) => f.startsWith('run-')), [], 'the per-run state dir is removed');

    // -u overrides the image User (the test image has none, i.e. root).
    const u = mc(home, ['run', '-q', '-u', '4321:8765', image(), '--', 'sh', '-c', 'echo "$(id -u):$(id -g)"']);
    assert.equal(u.status, 0, u.stderr);
    assert.equal(u.stdout, '4321:8765\n');

    const j = mc(home, ['run', '--json', image(), '--', '/no/such/cmd']);
    assert.equal(j.status, 127);
    const res = JSON.parse(j.stdout) as { exitCode: number; reason: string; stderr: string; backend: string; boot: { from: string; reason: string } };
    // The -u run above (no volume) saved the image's template; this one is restored from it.
    assert.equal(res.boot.from, 'template', res.boot.reason);
    assert.equal(res.exitCode, 127);
    assert.equal(res.reason, 'exited');
    assert.equal(res.backend, 'qemu');
    assert.match(res.stderr, /\/no\/such\/cmd: No such file or directory/);

    const cold = mc(home, ['run', '--json', '--cold', image(), '--', 'echo', 'cold']);
    assert.equal(cold.status, 0, cold.stderr);
    const coldRes = JSON.parse(cold.stdout) as { stdout: string; boot: { from: string; reason: string } };
    assert.deepEqual([coldRes.stdout, coldRes.boot.from], ['cold\n', 'cold']);
    assert.match(coldRes.boot.reason, /cold boot was asked for/);

    // A local rootfs committed in another boot and never confirmed on disk is not trusted:
    // run pulls again (one HEAD), which unpacks it afresh.
    const imagesDir = join(home, 'rootfs', 'images');
    const imageDir = join(imagesDir, readdirSync(imagesDir).find((n) => /^[a-f0-9]{64}$/.test(n))!);
    writeFileSync(join(imageDir, 'rootfs', 'sentinel'), 'from the old tree');
    writeFileSync(join(imageDir, 'boot-id'), 'an-earlier-boot 0123\n');
    writeFileSync(join(imageDir, 'synced'), '');
    const again = mc(home, ['run', '-q', image(), '--', 'sh', '-c', 'cat /sentinel 2>/dev/null || echo fresh']);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(again.stdout, 'fresh\n');

    const bad = mc(home, ['run', '--cpus', 'many', image(), '--', 'true']);
    assert.equal(bad.status, 2, 'usage error');
    assert.match(bad.stderr, /--cpus/);
    mkdirSync(join(home, 'x'));
    const badVol = mc(home, ['run', '-v', '/does/not/exist:/data', image(), '--', 'true']);
    assert.equal(badVol.status, 2);
    assert.match(badVol.stderr, /\/does\/not\/exist/);
  } finally {
    rmSync(home, { recursive: true, force: true });
    rmSync(vol, { recursive: true, force: true });
  }
});

test('monocore doctor --json reports backends, acceleration, kernel, initramfs and redis', async () => {
  const home = tempDir('doctor-home');
  try {
    const r = spawnSync(process.execPath, [cli, 'doctor', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: kernelDir(), MONOCORE_REDIS_URL: process.env.MONOCORE_TEST_REDIS_URL ?? '' },
    });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ name: string; status: string; detail: string }>; backends: Array<{ name: string; available: boolean; accel?: string; reason?: string }> };
    const by = (n: string) => rep.checks.find((c) => c.name === n);
    assert.equal(rep.backends.find((b) => b.name === 'qemu')?.available, true);
    assert.equal(rep.backends.find((b) => b.name === 'libkrun')?.available, false);
    assert.match(by('acceleration')?.detail ?? '', /^tcg: .*kvm_pvm/);
    assert.equal(by('guest kernel')?.status, 'ok');
    assert.equal(by('initramfs')?.status, 'ok');
    assert.equal(by('redis')?.status, 'ok', by('redis')?.detail);
    assert.equal(by('outbound network')?.status, 'ok', by('outbound network')?.detail);
    // Which backend each path actually uses, and why (libkrun is absent here).
    assert.match(by('backend for run')?.detail ?? '', /^qemu \(tcg\), auto; libkrun passed over: libkrun not found/);
    assert.match(by('backend for up')?.detail ?? '', /^worker hosts run qemu \(tcg\): /);
    assert.equal((rep as unknown as { selected: { run: { name: string } } }).selected.run.name, 'qemu');
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
