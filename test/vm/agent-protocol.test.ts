/**
 * The guest agent (libs/native/guest-init/agent.c) against the real host
 * client (AgentSession), the agent running as a host process on a unix socket
 * (agent-fixtures.ts). Covers the protocol end to end: exec (stdin, env, cwd,
 * exit codes, spawn failures, signals, pty), concurrency, background
 * processes, timeouts, flow control, files (atomic writes), tar, and the
 * session reset a snapshot restore relies on. Real-VM behaviour (users from
 * the image, cgroups, refresh): agent-vm.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { AgentSession, AgentFrameType, encodeAgentFrame, encodeAgentRecords, isMonocoreError } from '@monocore/engine';
import { startHostAgent, type HostAgent } from './agent-fixtures.js';
import { tempDir } from './vm-fixtures.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Whether a guest process exists and is not a zombie (kill -0 succeeds on zombies). */
export async function alive(s: AgentSession, pid: number): Promise<boolean> {
  const r = await s.exec({ argv: ['cat', `/proc/${pid}/stat`] });
  if (r.exitCode !== 0) return false;
  const state = r.stdout.toString().replace(/^.*\) /s, '')[0];
  return state !== 'Z' && state !== 'X';
}

/** SIGKILL is delivered asynchronously: wait (bounded) until the process is gone. */
export async function gone(s: AgentSession, pid: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (!(await alive(s, pid))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

describe('guest agent protocol (agent as a host process)', () => {
  let host: HostAgent;
  let s: AgentSession;
  before(async () => {
    host = await startHostAgent();
    s = await host.session();
  });
  after(async () => {
    s?.close();
    await host?.stop();
  });

  test('handshake reports the agent', () => {
    assert.equal(s.info.protocol, 1);
    assert.equal(s.info.agentVersion, 'test');
    assert.equal(s.info.sessions, 1);
    assert.deepEqual(s.info.detached, []);
    assert.match(s.info.bootId, /^[0-9a-f-]{36}$/);
  });

  test('exec: stdin, env over the defaults, cwd, stdout/stderr apart, exit code', async () => {
    const dir = tempDir('agent-cwd');
    const r = await s.exec({
      argv: ['sh', '-c', 'read x; echo "$x-$FOO-$EMPTY."; pwd; echo to-stderr >&2; exit 3'],
      stdin: 'line from stdin\n',
      env: ['FOO=first', 'FOO=second', 'EMPTY='],
      cwd: dir,
    });
    assert.equal(r.exitCode, 3);
    assert.equal(r.signal, null);
    assert.equal(r.timedOut, false);
    assert.equal(r.stdout.toString(), `line from stdin-second-.\n${dir}\n`);
    assert.equal(r.stderr.toString(), 'to-stderr\n');
    // argv passes byte-for-byte: no shell re-parsing
    const odd = ['a b', '"q"', '', 'nl\nx', 'ünï'];
    const r2 = await s.exec({ argv: ['sh', '-c', 'for a in "$@"; do printf "[%s]" "$a"; done', 'sh', ...odd] });
    assert.equal(r2.stdout.toString(), odd.map((a) => `[${a}]`).join(''));
    // clearEnv drops the defaults (PATH): only the given env remains
    const r3 = await s.exec({ argv: ['/usr/bin/env'], clearEnv: true, env: { X: 'y' } });
    assert.equal(r3.stdout.toString(), 'X=y\n');
  });

  test('spawn failures are exit codes with a reason: 127 not found, 126 not executable, 125 bad cwd', async () => {
    const nf = await s.exec({ argv: ['no-such-command-xyz'] });
    assert.equal(nf.exitCode, 127);
    assert.match(nf.spawnError ?? '', /no-such-command-xyz: No such file or directory/);
    assert.match(nf.stderr.toString(), /monocore-agent: exec no-such-command-xyz/);
    const dir = tempDir('agent-noexec');
    writeFileSync(join(dir, 'script'), '#!/bin/sh\necho hi\n', { mode: 0o644 });
    const ne = await s.exec({ argv: [join(dir, 'script')] });
    assert.equal(ne.exitCode, 126);
    assert.match(ne.spawnError ?? '', /Permission denied/);
    const cwd = await s.exec({ argv: ['true'], cwd: '/no/such/dir' });
    assert.equal(cwd.exitCode, 125);
    assert.match(cwd.spawnError ?? '', /cwd \/no\/such\/dir: No such file or directory/);
  });

  test('bad requests are refused before they reach the guest', async () => {
    await assert.rejects(s.exec({ argv: [] }), (e) => isMonocoreError(e, 'MC_AGENT_REQUEST_INVALID') && e.details.field === 'argv');
    await assert.rejects(s.exec({ argv: ['echo', 'a\0b'] }), (e) => isMonocoreError(e, 'MC_AGENT_REQUEST_INVALID'));
    await assert.rejects(s.exec({ argv: ['true'], cwd: 'relative' }), (e) => isMonocoreError(e, 'MC_AGENT_REQUEST_INVALID') && e.details.field === 'cwd');
    await assert.rejects(s.exec({ argv: ['true'], env: ['NOEQUALS'] }), (e) => isMonocoreError(e, 'MC_AGENT_REQUEST_INVALID') && e.details.field === 'env[0]');
    await assert.rejects(s.exec({ argv: ['echo', 'x'.repeat(70_000)] }), (e) => isMonocoreError(e, 'MC_AGENT_REQUEST_INVALID') && /limit is 65536/.test(e.message));
    await assert.rejects(s.readFile('etc/passwd'), (e) => isMonocoreError(e, 'MC_AGENT_REQUEST_INVALID') && e.details.field === 'path');
    // the session is still fine
    assert.equal((await s.exec({ argv: ['true'] })).exitCode, 0);
  });

  test('signals are forwarded; a signal death is 128+N', async () => {
    const p = await s.spawn({ argv: ['sleep', '100'] });
    assert.ok(p.pid > 1);
    await p.signal('SIGTERM');
    assert.deepEqual(await p.exit, { exitCode: 143, signal: 15, timedOut: false });
    // a handler in the command sees the signal and chooses its exit code
    const q = await s.spawn({ argv: ['sh', '-c', 'trap "echo got-usr1; exit 7" USR1; echo ready; while :; do sleep 0.05; done'] });
    const ready = await new Promise<string>((resolve) => q.stdout.once('data', (d: Buffer) => resolve(d.toString())));
    assert.equal(ready, 'ready\n');
    await q.signal('SIGUSR1');
    const out: Buffer[] = [];
    q.stdout.on('data', (d: Buffer) => out.push(d));
    assert.equal((await q.exit).exitCode, 7);
    assert.equal(Buffer.concat(out).toString(), 'got-usr1\n');
    await assert.rejects(p.signal('SIGNOPE' as NodeJS.Signals), (e) => isMonocoreError(e, 'MC_AGENT_REQUEST_INVALID'));
  });

  test('5 concurrent execs, each with its own streams', async () => {
    const results = await Promise.all(
      [1, 2, 3, 4, 5].map((n) =>
        s.exec({ argv: ['sh', '-c', 'cat; echo "out-$N"; echo "err-$N" >&2; exit $N'], env: { N: String(n) }, stdin: `in-${n}\n` }),
      ),
    );
    results.forEach((r, i) => {
      const n = i + 1;
      assert.equal(r.exitCode, n);
      assert.equal(r.stdout.toString(), `in-${n}\nout-${n}\n`);
      assert.equal(r.stderr.toString(), `err-${n}\n`);
    });
  });

  test('a process started in the background keeps running after its exec returns', async () => {
    const r = await s.exec({ argv: ['sh', '-c', 'sleep 60 & echo $!'] });
    assert.equal(r.exitCode, 0);
    const pid = Number(r.stdout.toString().trim());
    assert.ok(pid > 1);
    assert.equal(await alive(s, pid), true);
    await s.signalPid(pid, 'SIGKILL');
    // killTreeOnExit ends them instead
    const r2 = await s.exec({ argv: ['sh', '-c', 'sleep 60 & echo $!'], killTreeOnExit: true });
    const pid2 = Number(r2.stdout.toString().trim());
    assert.equal(await gone(s, pid2), true);
  });

  test('timeout kills the whole tree and says timedOut', async () => {
    const marker = join(tempDir('agent-timeout'), 'bg.pid');
    const r = await s.exec({ argv: ['sh', '-c', `sleep 100 & echo $! > ${marker}; sleep 100`], timeoutMs: 300 });
    assert.equal(r.timedOut, true);
    assert.equal(r.exitCode, 137);
    assert.equal(r.signal, 9);
    assert.equal(await gone(s, Number(readFileSync(marker, 'utf8').trim())), true);
  });

  test('cancel through an AbortSignal kills the tree', async () => {
    const ac = new AbortController();
    const p = await s.spawn({ argv: ['sleep', '100'], signal: ac.signal });
    ac.abort();
    const exit = await p.exit;
    assert.equal(exit.exitCode, 137);
    assert.equal(exit.timedOut, true);
  });

  test('pty: a terminal, interactive input, resize', async () => {
    const p = await s.spawn({ argv: ['sh'], pty: { cols: 80, rows: 24 }, env: { PS1: '$ ' } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const waitFor = async (re: RegExp): Promise<void> => {
      while (!re.test(out)) await new Promise((r) => p.stdout.once('data', r));
    };
    p.stdin!.write('tty; stty size; echo $((6*7))\n');
    await waitFor(/^42\r?$/m);
    assert.match(out, /\/dev\/pts\/\d+/);
    assert.match(out, /^24 80\r?$/m);
    await p.resize(120, 40);
    p.stdin!.write('stty size; exit 5\n');
    const exit = await p.exit;
    assert.match(out, /^(\$ )?40 120\r?$/m, "the new size (the shell may print its prompt first on that line: input and prompt race)");
    assert.equal(exit.exitCode, 5);
  });

  test('flow control: an unread stream holds at most its window; every byte arrives in order', async () => {
    const window = 128 * 1024;
    const total = 8 * 1024 * 1024;
    // A counter pattern, so order and completeness are checked, not just the size.
    const p = await s.spawn({ argv: ['seq', '-f', '%07.0f', '0', String(total / 8 - 1)], windowBytes: window });
    // Nobody reads: wait until the guest has filled the window and stopped.
    const stdout = p.stdout as typeof p.stdout & { held: number; credit: number };
    while (stdout.credit > 0) await new Promise((r) => setTimeout(r, 20));
    const held = stdout.held + stdout.readableLength;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(stdout.held + stdout.readableLength, held, 'the guest sent more while the window was full');
    assert.ok(held <= window, `${held} bytes buffered for a ${window}-byte window`);
    const h = createHash('sha256');
    let got = 0;
    let maxHeld = 0;
    p.stdout.on('data', (d: Buffer) => {
      h.update(d);
      got += d.length;
      maxHeld = Math.max(maxHeld, stdout.held + stdout.readableLength);
    });
    const exit = await p.exit;
    await new Promise((r) => (p.stdout.readableEnded ? r(null) : p.stdout.once('end', r)));
    assert.equal(exit.exitCode, 0);
    assert.equal(got, total);
    let expected = '';
    for (let i = 0; i < total / 8; i++) expected += `${String(i).padStart(7, '0')}\n`;
    assert.equal(h.digest('hex'), sha(Buffer.from(expected)));
    assert.ok(maxHeld <= window + 65536, `${maxHeld} bytes held`);
  });

  test('buffered exec caps output and says it truncated', async () => {
    const r = await s.exec({ argv: ['head', '-c', '300000', '/dev/zero'], maxOutputBytes: 100_000 });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout.length, 100_000);
    assert.deepEqual(r.truncated, { stdout: true, stderr: false });
  });

  test('files: binary round trip of any size with checksum, mode, owner, parents', async () => {
    const dir = tempDir('agent-files');
    const data = randomBytes(5 * 1024 * 1024 + 123);
    const path = join(dir, 'a/b/c/blob.bin');
    // streamed from an async iterable of odd-sized chunks
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let off = 0; off < data.length; off += 99_991) yield data.subarray(off, off + 99_991);
    }
    assert.deepEqual(await s.writeFile(path, chunks(), { mode: 0o4750, owner: '1234:2345' }), { size: data.length });
    const st = statSync(path);
    assert.equal(st.mode & 0o7777, 0o4750); // setuid kept: chmod after chown
    assert.equal(st.uid, 1234);
    assert.equal(st.gid, 2345);
    assert.equal(statSync(join(dir, 'a/b')).uid, 1234, 'created parents get the owner');
    const f = await s.readFile(path);
    assert.equal(f.info.type, 'file');
    assert.equal(f.info.size, data.length);
    assert.equal(f.info.mode, 0o4750);
    assert.equal(f.info.uid, 1234);
    const back: Buffer[] = [];
    for await (const c of f.body) back.push(c as Buffer);
    assert.equal(sha(Buffer.concat(back)), sha(data));
    // empty file, string data, overwrite keeps atomicity
    await s.writeFile(join(dir, 'empty'), '');
    assert.equal(readFileSync(join(dir, 'empty')).length, 0);
    await s.writeFile(path, 'replaced');
    assert.equal(readFileSync(path, 'utf8'), 'replaced');
    assert.equal(statSync(path).mode & 0o7777, 0o644);
    // stat
    assert.equal((await s.stat(dir))?.type, 'dir');
    assert.equal(await s.stat(join(dir, 'nope')), undefined);
    assert.equal(await s.stat(join(path, 'below-a-file')), undefined);
  });

  test('files: errors name the path; nothing half-written is ever left', async () => {
    const dir = tempDir('agent-atomic');
    await assert.rejects(s.readFile(join(dir, 'missing')), (e) => isMonocoreError(e, 'MC_AGENT_FILE_NOT_FOUND') && e.message.includes('missing'));
    await assert.rejects(s.readFile(dir), (e) => isMonocoreError(e, 'MC_AGENT_FILE_ERROR') && e.details.errno === 'EISDIR');
    await assert.rejects(s.writeFile(dir, 'x'), (e) => isMonocoreError(e, 'MC_AGENT_FILE_ERROR') && e.details.errno === 'EISDIR');
    await assert.rejects(s.writeFile(join(dir, 'x/y'), 'x', { parents: false }), (e) => isMonocoreError(e, 'MC_AGENT_FILE_NOT_FOUND'));
    await assert.rejects(s.writeFile(join(dir, 'o'), 'x', { owner: 'no-such-user-q' }), (e) => isMonocoreError(e, 'MC_AGENT_FILE_ERROR') && /no such user/.test(e.message));
    // over the size limit: refused, the old content stays, no temp file remains
    const target = join(dir, 'keep.txt');
    writeFileSync(target, 'old');
    const big = Readable.from((function* () {
      for (let i = 0; i < 40; i++) yield Buffer.alloc(64 * 1024, i);
    })());
    await assert.rejects(s.writeFile(target, big, { maxBytes: 1_000_000 }), (e) => isMonocoreError(e, 'MC_AGENT_FILE_TOO_LARGE'));
    // a source that fails half-way: same
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(300_000, 1);
      throw new Error('upload connection dropped');
    }
    await assert.rejects(s.writeFile(target, failing()), /upload connection dropped/);
    const ac = new AbortController();
    async function* slow(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(100_000, 2);
      ac.abort(new Error('caller gave up'));
      yield Buffer.alloc(100_000, 3);
    }
    await assert.rejects(s.writeFile(target, slow(), { signal: ac.signal }), /caller gave up/);
    assert.equal(readFileSync(target, 'utf8'), 'old');
    assert.deepEqual(readdirSync(dir).sort(), ['keep.txt']);
  });

  test('tar out of a directory and into another: the tree survives', async () => {
    const src = tempDir('agent-tar-src');
    mkdirSync(join(src, 'sub/deeper'), { recursive: true });
    const blob = randomBytes(300_000);
    writeFileSync(join(src, 'sub/deeper/blob'), blob);
    writeFileSync(join(src, 'x.sh'), '#!/bin/sh\n', { mode: 0o755 });
    const tar = await s.tarOut(src);
    const dst = join(tempDir('agent-tar-dst'), 'new/dir');
    await s.tarIn(dst, tar);
    assert.equal(sha(readFileSync(join(dst, 'sub/deeper/blob'))), sha(blob));
    assert.equal(statSync(join(dst, 'x.sh')).mode & 0o777, 0o755);
    await assert.rejects(s.tarOut('/no/such/dir'), (e) => isMonocoreError(e, 'MC_AGENT_FILE_NOT_FOUND'));
    await assert.rejects(s.tarIn(dst, Buffer.from('this is not a tar archive'.repeat(100))), (e) => isMonocoreError(e, 'MC_AGENT_FILE_ERROR') && /exit/.test(e.message));
  });

  test('refresh is refused when the agent runs on the host (it would change the host)', async () => {
    await assert.rejects(s.refresh({ hostname: 'x' }), (e) => isMonocoreError(e, 'MC_AGENT_GUEST_ERROR') && e.details.errno === 'EPERM');
  });
});

describe('guest agent bulk lane (files through shared slots, agent as a host process)', () => {
  let host: HostAgent;
  let s: AgentSession;
  before(async () => {
    host = await startHostAgent({ lane: true });
    s = await host.session();
  });
  after(async () => {
    s?.close();
    await host?.stop();
  });

  test('both ends have the lane: 16 slots of 1 MiB, all free', () => {
    assert.deepEqual(s.info.lane, { slots: 16, slotBytes: 1024 * 1024 });
    assert.equal(s.laneSlotsFree, 16);
  });

  test('round trip through the lane: odd sizes, checksums, mode and owner; the bytes really crossed the lane', async () => {
    const dir = tempDir('lane-files');
    for (const size of [1, 4095, 4097, 1024 * 1024, 1024 * 1024 + 1, 9 * 1024 * 1024 + 12_345]) {
      const data = randomBytes(size);
      const path = join(dir, `sub/${size}.bin`);
      async function* chunks(): AsyncGenerator<Buffer> {
        for (let off = 0; off < data.length; off += 131_071) yield data.subarray(off, off + 131_071);
      }
      assert.deepEqual(await s.writeFile(path, chunks(), { mode: 0o640, owner: '1234:2345' }), { size });
      assert.equal(sha(readFileSync(path)), sha(data), `upload of ${size} bytes`);
      assert.equal(statSync(path).mode & 0o7777, 0o640);
      assert.equal(statSync(path).uid, 1234);
      const f = await s.readFile(path);
      assert.equal(f.info.size, size);
      const back: Buffer[] = [];
      for await (const c of f.body) back.push(c as Buffer);
      assert.equal(sha(Buffer.concat(back)), sha(data), `download of ${size} bytes`);
    }
    // The last upload's final partial slot is in the lane file: the data did not go as DATA frames.
    const tail = readFileSync(join(dir, `sub/${9 * 1024 * 1024 + 12_345}.bin`)).subarray(9 * 1024 * 1024);
    assert.ok(readFileSync(host.lanePath!).includes(tail), 'the lane file holds the last slot of the upload');
    assert.equal(s.laneSlotsFree, 16, 'every slot came back');
  });

  test('more transfers at once than the lane has slots: all complete, in order, and give every slot back', async () => {
    const dir = tempDir('lane-many');
    const blobs = Array.from({ length: 7 }, (_, i) => randomBytes(3 * 1024 * 1024 + i * 777));
    await Promise.all(blobs.map((b, i) => s.writeFile(join(dir, `f${i}`), b)));
    const reads = await Promise.all(blobs.map(async (_, i) => {
      const f = await s.readFile(join(dir, `f${i}`));
      const parts: Buffer[] = [];
      for await (const c of f.body) parts.push(c as Buffer);
      return Buffer.concat(parts);
    }));
    reads.forEach((r, i) => assert.equal(sha(r), sha(blobs[i]!), `file ${i}`));
    assert.equal(s.laneSlotsFree, 16);
  });

  test('a reader that stops reading holds no slot; its data waits within the window', async () => {
    const path = join(tempDir('lane-slow'), 'big');
    const data = randomBytes(12 * 1024 * 1024);
    await s.writeFile(path, data);
    const f = await s.readFile(path);
    const it = f.body[Symbol.asyncIterator]();
    const first = await it.next();
    await new Promise((r) => setTimeout(r, 300)); // the guest has every grant filled by now
    assert.ok(s.laneSlotsFree! >= 16 - 4, `a stalled read holds at most its window of slots (free ${s.laneSlotsFree})`);
    // Another transfer still gets through meanwhile.
    await s.writeFile(path + '.other', randomBytes(2 * 1024 * 1024));
    const parts: Buffer[] = [first.value as Buffer];
    for (let r = await it.next(); !r.done; r = await it.next()) parts.push(r.value as Buffer);
    assert.equal(sha(Buffer.concat(parts)), sha(data));
    assert.equal(s.laneSlotsFree, 16);
  });

  test('failed and cancelled uploads leave nothing and give every slot back', async () => {
    const dir = tempDir('lane-atomic');
    const target = join(dir, 'keep.txt');
    writeFileSync(target, 'old');
    await assert.rejects(s.writeFile(target, Buffer.alloc(5 * 1024 * 1024, 7), { maxBytes: 3 * 1024 * 1024 }), (e) => isMonocoreError(e, 'MC_AGENT_FILE_TOO_LARGE'));
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(2_500_000, 1);
      throw new Error('upload connection dropped');
    }
    await assert.rejects(s.writeFile(target, failing()), /upload connection dropped/);
    const ac = new AbortController();
    async function* slow(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(1_500_000, 2);
      ac.abort(new Error('caller gave up'));
      yield Buffer.alloc(100_000, 3);
    }
    await assert.rejects(s.writeFile(target, slow(), { signal: ac.signal }), /caller gave up/);
    // A download cancelled half-way.
    writeFileSync(join(dir, 'big'), randomBytes(8 * 1024 * 1024));
    const ac2 = new AbortController();
    const f = await s.readFile(join(dir, 'big'), { signal: ac2.signal });
    ac2.abort();
    await assert.rejects((async () => {
      for await (const _ of f.body) { /* drain */ }
    })());
    assert.equal(readFileSync(target, 'utf8'), 'old');
    assert.deepEqual(readdirSync(dir).sort(), ['big', 'keep.txt']);
    for (let i = 0; i < 50 && s.laneSlotsFree !== 16; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(s.laneSlotsFree, 16);
  });

  test('an agent started without a lane moves files through the port with the same results', async () => {
    const plain = await startHostAgent();
    const p = await plain.session({ lane: host.laneFile! }); // the host has one, the agent does not
    try {
      assert.equal(p.info.lane, undefined);
      assert.equal(p.laneSlotsFree, undefined);
      const path = join(tempDir('lane-none'), 'x');
      const data = randomBytes(3 * 1024 * 1024 + 5);
      await p.writeFile(path, data);
      const f = await p.readFile(path);
      const parts: Buffer[] = [];
      for await (const c of f.body) parts.push(c as Buffer);
      assert.equal(sha(Buffer.concat(parts)), sha(data));
    } finally {
      p.close();
      await plain.stop();
    }
  });
});

describe('guest agent sessions: reset, resync, detached execs', () => {
  test('a new session after the host went away lists the execs left running, and never runs a torn request', async () => {
    const host = await startHostAgent();
    try {
      const s1 = await host.session();
      const p = await s1.spawn({ argv: ['sleep', '60'] });
      const done = await s1.exec({ argv: ['true'] });
      assert.equal(done.exitCode, 0);
      s1.close(); // the host end goes away (as when a VM is restored elsewhere)
      await assert.rejects(p.exit, (e) => isMonocoreError(e, 'MC_AGENT_DISCONNECTED'));

      // The agent reconnects. Before our handshake, write a whole EXEC frame but its
      // last bytes: the agent holds it; the resync padding must make it fail its CRC.
      const sock = await host.nextConnection();
      const marker = join(tempDir('agent-torn'), 'ran');
      const torn = encodeAgentFrame(AgentFrameType.EXEC, 0, 77, encodeAgentRecords([['arg', 'touch'], ['arg', marker]]));
      sock.write(torn.subarray(0, torn.length - 3));
      const s2 = await AgentSession.open(sock, { label: 'resync' });
      assert.equal(s2.info.sessions, 2);
      assert.equal(s2.info.detached.length, 1);
      assert.equal(s2.info.detached[0]!.pid, p.pid);
      assert.equal(s2.info.detached[0]!.exitCode, null);
      assert.equal((await s2.exec({ argv: ['kill', '-0', String(p.pid)] })).exitCode, 0, 'the detached exec still runs');
      assert.equal(existsSync(marker), false, 'a torn request must never run');
      await s2.signalPid(p.pid, 'SIGTERM');
      assert.equal(await gone(s2, p.pid), true);
      s2.close();
      // the third session reports how it ended
      const s3 = await host.session();
      assert.deepEqual(s3.info.detached.map((d) => [d.pid, d.exitCode]), [[p.pid, 143]]);
      s3.close();
    } finally {
      await host.stop();
    }
  });
});
