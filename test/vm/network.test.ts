import { performance } from 'node:perf_hooks';
/**
 * Guest networking, for real (docs/NETWORK.md). Nothing here can leave the
 * machine: the VM with a user-mode NIC runs inside a network namespace this test
 * creates (loopback only), and group VMs have no host-side interface at all.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import { isMonocoreError } from '@monocore/engine';
import { backend, spec, type Collect } from './vm-fixtures.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(stream: Collect, text: string, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!stream.text.includes(text)) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${JSON.stringify(text)}; got ${JSON.stringify(stream.text)}`);
    await sleep(50);
  }
}

test('network: port forward reaches the guest; the guest cannot reach a Redis on the host loopback (inside a test netns)', async () => {
  const ns = `mc-vmtest-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  const redis = spawn('ip', ['netns', 'exec', ns, 'redis-server', '--port', '6379', '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  try {
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    // Positive control: the "host" Redis answers on the namespace's loopback.
    let pong = '';
    for (let i = 0; i < 50 && pong !== 'PONG'; i++) {
      await sleep(100);
      try {
        pong = execFileSync('ip', ['netns', 'exec', ns, 'redis-cli', '-p', '6379', 'ping'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      } catch {
        // not up yet
      }
    }
    assert.equal(pong, 'PONG', 'redis in the test netns is up');

    const qemu = backend({ launchPrefix: ['ip', 'netns', 'exec', ns] });
    const s = spec('webnet', {
      command: '/bin/sh',
      args: [
        '-c',
        'mkdir -p /www && echo hello-from-guest > /www/index.html && httpd -p 8080 -h /www && echo ready; ' +
          // slirp's host alias 10.0.2.2 is the host's loopback; restrict=on must make it unreachable
          'for t in 10.0.2.2:6379 10.0.2.3:53 10.0.2.2:22; do ' +
          '  if printf "PING\\r\\n" | timeout 3 nc "${t%:*}" "${t#*:}" 2>/dev/null | grep -q .; then echo "reach $t"; else echo "blocked $t"; fi; done; ' +
          'echo probes-done; while :; do sleep 1; done',
      ],
      ports: [{ host: 18080, guest: 8080 }],
    });
    const h = await qemu.start(s);
    try {
      await h.started;
      await waitFor(s.stdout, 'probes-done', 60_000);
      assert.match(s.stdout.text, /blocked 10\.0\.2\.2:6379/);
      assert.doesNotMatch(s.stdout.text, /reach /);
      // Port forward: the host (in the namespace) fetches the guest's httpd on 127.0.0.1:18080.
      let body = '';
      for (let i = 0; i < 20 && body === ''; i++) {
        try {
          body = execFileSync('ip', ['netns', 'exec', ns, 'curl', '-s', '--max-time', '3', 'http://127.0.0.1:18080/'], { encoding: 'utf8' });
        } catch {
          await sleep(250);
        }
      }
      assert.equal(body, 'hello-from-guest\n');
      const exit = await h.stop({ timeoutMs: 5000 });
      assert.ok(exit.reason === 'stopped' || exit.reason === 'killed', JSON.stringify(exit));
    } finally {
      await h.kill();
      rmSync(s.stateDir, { recursive: true, force: true });
    }
  } finally {
    redis.kill('SIGKILL');
    await new Promise((r) => redis.once('exit', r));
    execFileSync('ip', ['netns', 'del', ns]);
  }
});

test('network: same-group VMs reach each other by name; another group cannot reach them', async () => {
  const qemu = backend();
  const a = spec('a', {
    command: '/bin/sh',
    args: ['-c', 'mkdir -p /www && echo page-of-a > /www/index.html && httpd -p 80 -h /www && echo ready && while :; do sleep 1; done'],
    network: { mode: 'group', group: 'g1', address: '10.88.0.2/24', peers: { b: '10.88.0.3' }, localOnly: true },
  });
  // ping first (bounded: 8 x 1 s), then fetch the page by name (/etc/hosts written by init).
  const probe = 'for i in 1 2 3 4 5 6 7 8; do if ping -c 1 -W 1 "$1" >/dev/null 2>&1; then timeout 10 wget -q -O - "http://$1/"; exit $?; fi; done; echo unreachable; exit 3';
  const b = spec('b', {
    command: '/bin/sh',
    args: ['-c', probe, 'sh', 'a'],
    network: { mode: 'group', group: 'g1', address: '10.88.0.3/24', peers: { a: '10.88.0.2' }, localOnly: true },
  });
  // c lives in another group but is told where "a" is: the segment, not the name, must stop it.
  const c = spec('c', {
    command: '/bin/sh',
    args: ['-c', probe, 'sh', 'a'],
    network: { mode: 'group', group: 'g2', address: '10.88.0.4/24', peers: { a: '10.88.0.2' }, localOnly: true },
  });
  const ha = await qemu.start(a);
  try {
    await ha.started;
    await waitFor(a.stdout, 'ready', 60_000);
    const [hb, hc] = await Promise.all([qemu.start(b), qemu.start(c)]);
    const [eb, ec] = await Promise.all([hb.wait(), hc.wait()]);
    assert.deepEqual(eb, { exitCode: 0, reason: 'exited' }, b.stderr.text);
    assert.equal(b.stdout.text, 'page-of-a\n', 'b fetched a by name over the group segment');
    assert.deepEqual(ec, { exitCode: 3, reason: 'exited' });
    assert.equal(c.stdout.text, 'unreachable\n', 'c (other group) cannot reach a');
  } finally {
    await ha.kill();
    for (const s of [a, b, c]) rmSync(s.stateDir, { recursive: true, force: true });
  }
});

test('network: a published port that is already taken on the host fails before boot, naming it', async () => {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  try {
    const s = spec('taken', { ports: [{ host: port, guest: 80 }] });
    await assert.rejects(backend().start(s), (e: unknown) => isMonocoreError(e, 'MC_VM_START_FAILED') && e.message.includes(`127.0.0.1:${port}`) && /already in use/.test(e.message));
  } finally {
    await new Promise((r) => srv.close(r));
  }
});
