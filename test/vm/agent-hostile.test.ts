/**
 * The host client against a hostile guest: a test peer (written here, on a
 * socket pair) that speaks just enough of the protocol to get a session and
 * then breaks it — garbage, oversized or torn frames, bad CRCs, frames on
 * channels the host never opened, data beyond its credit, unsolicited pongs,
 * malformed records, silence — or floods. The host must end the session with
 * the right MC_AGENT_* code, fail every pending call with it, and never hold
 * more than its windows; the test process (the "worker") carries on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { truncateSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AGENT_LANE_FILE_BYTES, AGENT_LANE_SLOT_BYTES, AGENT_MAX_PAYLOAD, AgentFrameType as T, AgentSession, encodeAgentFrame, encodeAgentRecords, isMonocoreError,
  parseAgentRecords, type AgentFrame, type AgentSessionOptions,
} from '@monocore/engine';
import { tempDir } from './vm-fixtures.js';

/** The guest end of a fresh socket pair, and the host end. */
async function socketPair(): Promise<{ guest: Socket; host: Socket }> {
  const path = join(tempDir('hostile'), 's.sock');
  const server = createServer();
  server.listen(path);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const guest = connect(path);
  const [host] = await accepted;
  server.close();
  guest.on('error', () => {});
  return { guest, host };
}

/** A fake guest: reads the host's frames (after the resync zeros) and answers as scripted. */
class FakeGuest {
  readonly frames: AgentFrame[] = [];
  private waiters: Array<() => void> = [];
  private synced = false;
  private buf = Buffer.alloc(0);

  constructor(readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      if (!this.synced) {
        const at = this.buf.indexOf('MCA1', 0, 'latin1');
        if (at < 0) {
          this.buf = this.buf.subarray(Math.max(0, this.buf.length - 3));
          return;
        }
        this.synced = true;
        this.buf = this.buf.subarray(at);
      }
      // The host sends types a guest-side check of the host's decoder would refuse, so the
      // header is read by hand here.
      while (this.buf.length >= 20) {
        const len = this.buf.readUInt32LE(12);
        if (this.buf.length < 20 + len) break;
        this.frames.push({ type: this.buf[4]!, stream: this.buf[5]!, channel: this.buf.readUInt32LE(8), payload: Buffer.from(this.buf.subarray(20, 20 + len)) });
        this.buf = this.buf.subarray(20 + len);
      }
      for (const w of this.waiters.splice(0)) w();
    });
  }

  async next(type: number): Promise<AgentFrame> {
    for (;;) {
      const i = this.frames.findIndex((f) => f.type === type);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  send(type: number, channel: number, payload: Buffer | Array<[string, string]> = Buffer.alloc(0), stream = 0): void {
    this.sock.write(encodeAgentFrame(type, stream, channel, Array.isArray(payload) ? encodeAgentRecords(payload) : payload));
  }

  /** Answers the HELLO like a real agent. */
  async handshake(extra: Array<[string, string]> = []): Promise<void> {
    const hello = await this.next(T.HELLO);
    const nonce = parseAgentRecords(hello.payload).get('nonce')!;
    this.send(T.HELLO_ACK, 0, [['version', '1'], ['nonce', nonce], ['agent', 'fake'], ['boot_id', 'x'], ['uptime', '1'], ['sessions', '1'], ['pid', '42'], ['cgroup', '0'], ...extra]);
  }
}

async function session(opts: AgentSessionOptions = {}): Promise<{ g: FakeGuest; s: AgentSession }> {
  const { guest, host } = await socketPair();
  const g = new FakeGuest(guest);
  const [s] = await Promise.all([AgentSession.open(host, { label: 'fake', ...opts }), g.handshake()]);
  return { g, s };
}

/** Starts an exec and answers STARTED, so there is a pending call to fail. */
async function runningExec(g: FakeGuest, s: AgentSession): Promise<{ channel: number; exit: Promise<unknown> }> {
  const spawned = s.spawn({ argv: ['x'] });
  const exec = await g.next(T.EXEC);
  g.send(T.STARTED, exec.channel, [['pid', '100'], ['window', '0']]);
  const p = await spawned;
  return { channel: exec.channel, exit: p.exit };
}

const protocolError = (re: RegExp) => (e: unknown) => isMonocoreError(e, 'MC_AGENT_PROTOCOL_ERROR') && re.test(String(e.details.reason));

test('handshake: old-session bytes and a half frame before the answer are skipped', async () => {
  const { guest, host } = await socketPair();
  const g = new FakeGuest(guest);
  const opening = AgentSession.open(host, { label: 'fake' });
  const hello = await g.next(T.HELLO);
  const nonce = parseAgentRecords(hello.payload).get('nonce')!;
  // the tail of a frame the guest was writing at snapshot time, an old DATA frame, and a
  // HELLO_ACK with someone else's nonce: all skipped
  guest.write(encodeAgentFrame(T.DATA, 1, 9, Buffer.alloc(1000, 7)).subarray(300));
  guest.write(encodeAgentFrame(T.DATA, 1, 9, Buffer.from('old output')));
  guest.write(encodeAgentFrame(T.HELLO_ACK, 0, 0, encodeAgentRecords([['version', '1'], ['nonce', 'f'.repeat(32)], ['sessions', '1'], ['pid', '1']])));
  g.send(T.HELLO_ACK, 0, [['version', '1'], ['nonce', nonce], ['sessions', '2'], ['pid', '7'], ['detached', '5 123 running'], ['detached', '6 124 0']]);
  const s = await opening;
  assert.equal(s.info.sessions, 2);
  assert.deepEqual(s.info.detached, [{ channel: 5, pid: 123, exitCode: null }, { channel: 6, pid: 124, exitCode: 0 }]);
  s.close();
});

test('handshake: a guest that answers with endless garbage is cut off after the skip limit', async () => {
  const { guest, host } = await socketPair();
  const opening = AgentSession.open(host, { label: 'fake', handshakeMaxSkipBytes: 1 << 20 });
  const junk = Buffer.alloc(64 * 1024, 'M'); // the magic's first byte, over and over
  const flood = setInterval(() => guest.write(junk), 1);
  await assert.rejects(opening, (e) => isMonocoreError(e, 'MC_AGENT_HANDSHAKE_FAILED') && /without answering the handshake/.test(e.message));
  clearInterval(flood);
  guest.destroy();
});

test('handshake: silence, a closed connection, a version refusal, a malformed answer', async () => {
  {
    const { guest, host } = await socketPair();
    await assert.rejects(AgentSession.open(host, { handshakeTimeoutMs: 200 }), (e) => isMonocoreError(e, 'MC_AGENT_HANDSHAKE_FAILED') && /within 200 ms/.test(e.message));
    guest.destroy();
  }
  {
    const { guest, host } = await socketPair();
    const opening = AgentSession.open(host);
    guest.destroy();
    await assert.rejects(opening, (e) => isMonocoreError(e, 'MC_AGENT_HANDSHAKE_FAILED') && /closed/.test(e.message));
  }
  {
    const { guest, host } = await socketPair();
    const g = new FakeGuest(guest);
    const opening = AgentSession.open(host);
    const nonce = parseAgentRecords((await g.next(T.HELLO)).payload).get('nonce')!;
    g.send(T.ERROR, 0, [['errno', 'EPROTONOSUPPORT'], ['message', 'agent speaks protocol 9'], ['nonce', nonce]]);
    await assert.rejects(opening, (e) => isMonocoreError(e, 'MC_AGENT_VERSION_MISMATCH'));
  }
  {
    const { guest, host } = await socketPair();
    const g = new FakeGuest(guest);
    const opening = AgentSession.open(host);
    const nonce = parseAgentRecords((await g.next(T.HELLO)).payload).get('nonce')!;
    g.send(T.HELLO_ACK, 0, [['version', '1'], ['nonce', nonce], ['sessions', 'many'], ['pid', '1']]);
    await assert.rejects(opening, (e) => isMonocoreError(e, 'MC_AGENT_PROTOCOL_ERROR') && /sessions/.test(e.message));
  }
});

test('garbage after the handshake ends the session; pending calls fail with the same error', async () => {
  const { g, s } = await session();
  const { exit } = await runningExec(g, s);
  g.sock.write(Buffer.from('this is not a frame at all, it is garbage from a compromised guest'));
  const reason = await s.closed;
  assert.equal(reason.code, 'MC_AGENT_PROTOCOL_ERROR');
  assert.match(String(reason.details.reason), /bad magic/);
  await assert.rejects(exit, (e) => e === reason);
  await assert.rejects(s.exec({ argv: ['true'] }), (e) => e === reason);
  await assert.rejects(s.ping(), (e) => e === reason);
  assert.ok(g.sock.destroyed || (await once(g.sock, 'close')));
});

test('each kind of bad frame has its reason', async () => {
  const cases: Array<[string, (g: FakeGuest, ch: number) => void, RegExp]> = [
    ['an oversized length, refused before its payload is buffered', (g) => {
      const h = encodeAgentFrame(T.DATA, 1, 1, Buffer.alloc(0));
      h.writeUInt32LE(AGENT_MAX_PAYLOAD + 1, 12);
      g.sock.write(h);
    }, /payload length 65537 exceeds 65536/],
    ['a CRC mismatch', (g, ch) => {
      const f = encodeAgentFrame(T.EXIT, 0, ch, encodeAgentRecords([['code', '0']]));
      f.writeUInt8(f.readUInt8(f.length - 2) ^ 0xff, f.length - 2);
      g.sock.write(f);
    }, /CRC mismatch/],
    ['a header CRC mismatch on DATA', (g, ch) => {
      const f = encodeAgentFrame(T.DATA, 1, ch, Buffer.from('x'));
      f.writeUInt8(f.readUInt8(16) ^ 1, 16);
      g.sock.write(f);
    }, /header CRC/],
    ['a type only the host may send', (g, ch) => g.send(T.EXEC, ch, [['arg', 'x']]), /EXEC is not one the guest may send/],
    ['nonzero reserved flags', (g, ch) => {
      const f = encodeAgentFrame(T.EOF, 1, ch);
      f.writeUInt16LE(1, 6);
      g.sock.write(f);
    }, /reserved flags/],
    ['a frame on a channel the host never opened', (g) => g.send(T.DATA, 999, Buffer.from('x'), 1), /channel 999, which the host has not opened/],
    ['data beyond the window', (g, ch) => {
      for (let i = 0; i < 5; i++) g.send(T.DATA, ch, Buffer.alloc(60_000), 1); // 300,000 > 262,144
    }, /beyond the window/],
    ['data on stdin\'s stream', (g, ch) => g.send(T.DATA, ch, Buffer.from('x'), 0), /DATA on stream 0/],
    ['a pong without a ping', (g) => g.send(T.PONG, 0, Buffer.from('12345678')), /PONG for a PING the host did not send/],
    ['records that do not end with NUL', (g, ch) => g.send(T.EXIT, ch, Buffer.from('code=0')), /do not end with NUL/],
    ['an exit code out of range', (g, ch) => g.send(T.EXIT, ch, [['code', '99999']]), /code=99999 is out of range/],
    ['a second STARTED', (g, ch) => g.send(T.STARTED, ch, [['pid', '5']]), /STARTED on exec channel/],
  ];
  for (const [name, act, re] of cases) {
    const { g, s } = await session();
    const { channel, exit } = await runningExec(g, s);
    act(g, channel);
    await assert.rejects(exit, protocolError(re), name);
    g.sock.destroy();
  }
});

test('a guest that stops answering is detected (MC_AGENT_UNRESPONSIVE)', async () => {
  const { g, s } = await session({ pingIntervalMs: 50, pingTimeoutMs: 300 });
  const { exit } = await runningExec(g, s);
  // the fake guest never answers PINGs
  const reason = await s.closed;
  assert.equal(reason.code, 'MC_AGENT_UNRESPONSIVE');
  await assert.rejects(exit, (e) => e === reason);
  assert.ok(g.frames.some((f) => f.type === T.PING));
});

test('liveness: a guest that answers pings keeps its session', async () => {
  const { g, s } = await session({ pingIntervalMs: 30, pingTimeoutMs: 200 });
  let pongs = 0;
  const answer = async (): Promise<void> => {
    for (;;) {
      const p = await g.next(T.PING);
      g.send(T.PONG, 0, p.payload);
      pongs++;
    }
  };
  void answer();
  const ms = await s.ping();
  assert.ok(ms >= 0);
  while (pongs < 10) await new Promise((r) => setTimeout(r, 30));
  s.close();
  assert.equal((await s.closed).code, 'MC_AGENT_DISCONNECTED');
});

test('a flood within the window is held at the window: the guest waits for credit the host only grants as the consumer reads', async () => {
  const { g, s } = await session();
  const spawned = s.spawn({ argv: ['flood'], windowBytes: 128 * 1024 });
  const exec = await g.next(T.EXEC);
  assert.equal(parseAgentRecords(exec.payload).get('window'), '131072');
  g.send(T.STARTED, exec.channel, [['pid', '100'], ['window', '0']]);
  const p = await spawned;
  const out = p.stdout as typeof p.stdout & { held: number };
  // A well-behaved flooder: exactly its credit, then more as credit comes.
  let credit = 128 * 1024;
  let sent = 0;
  const total = 16 * 1024 * 1024;
  const chunk = Buffer.alloc(32 * 1024, 1);
  const pump = (): void => {
    while (credit >= chunk.length && sent < total) {
      g.send(T.DATA, exec.channel, chunk, 1);
      credit -= chunk.length;
      sent += chunk.length;
    }
    if (sent >= total) g.send(T.EXIT, exec.channel, [['code', '0']]);
  };
  void (async () => {
    while (sent < total) {
      const c = await g.next(T.CREDIT);
      credit += Number(parseAgentRecords(c.payload).get('bytes'));
      pump();
    }
  })();
  pump();
  // nobody reads yet: the host holds one window, and the guest has no credit left
  while (out.held < 128 * 1024) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(out.held, 128 * 1024);
  assert.equal(credit, 0);
  let got = 0;
  let maxHeld = 0;
  p.stdout.on('data', (d: Buffer) => {
    got += d.length;
    maxHeld = Math.max(maxHeld, out.held + p.stdout.readableLength);
  });
  await p.exit;
  await new Promise((r) => (p.stdout.readableEnded ? r(null) : p.stdout.once('end', r)));
  assert.equal(got, total);
  assert.ok(maxHeld <= 128 * 1024 + AGENT_MAX_PAYLOAD, `${maxHeld}`);
  s.close();
});

test('a guest that never reads stalls the host\'s writer instead of growing its memory', async () => {
  const { g, s } = await session({ writeHighWaterBytes: 256 * 1024 });
  const spawned = s.spawn({ argv: ['cat'], stdin: true });
  const exec = await g.next(T.EXEC);
  // The hostile guest grants a huge stdin credit and then stops reading its socket.
  g.send(T.STARTED, exec.channel, [['pid', '100'], ['window', String(64 << 20)]]);
  const p = await spawned;
  g.sock.pause();
  let written = 0;
  const chunk = Buffer.alloc(64 * 1024);
  const writer = (async () => {
    for (let i = 0; i < 1024; i++) {
      if (!p.stdin!.write(chunk)) await once(p.stdin!, 'drain');
      written += chunk.length;
    }
  })();
  writer.catch(() => {});
  await new Promise((r) => setTimeout(r, 500));
  // The kernel's socket buffers take some; the rest must be waiting, not queued in memory.
  const queued = (s as unknown as { socket: Socket }).socket.writableLength;
  assert.ok(queued <= 256 * 1024 + 2 * AGENT_MAX_PAYLOAD, `host socket queue ${queued}`);
  assert.ok(written < 64 << 20, `${written} bytes accepted by the stream`);
  s.close();
  await assert.rejects(p.exit, (e) => isMonocoreError(e, 'MC_AGENT_DISCONNECTED'));
});

test('bulk lane: a guest naming slots it was not lent, or too many bytes, breaks the protocol; its geometry is capped by the host file', async () => {
  const lanePath = join(tempDir('hostile-lane'), 'lane.img');
  writeFileSync(lanePath, '');
  truncateSync(lanePath, AGENT_LANE_FILE_BYTES);
  const lane = await open(lanePath, 'r+');
  const laneSession = async (geometry: string): Promise<{ g: FakeGuest; s: AgentSession }> => {
    const { guest, host } = await socketPair();
    const g = new FakeGuest(guest);
    const [s] = await Promise.all([AgentSession.open(host, { label: 'fake', lane }), g.handshake([['lane', geometry]])]);
    return { g, s };
  };
  // A guest claiming 64 slots gets the 16 the host's file holds.
  {
    const { g, s } = await laneSession(`64 ${AGENT_LANE_SLOT_BYTES}`);
    assert.equal(s.laneSlotsFree, 16);
    s.close();
    g.sock.destroy();
  }
  // A download: the host grants slots; naming another one, or more than a slot, is a violation.
  for (const [name, lane, re] of [
    ['a slot not granted', (granted: number) => [['slot', String((granted + 5) % 16)], ['len', '10']], /not a slot lent to it/],
    ['more bytes than a slot', (granted: number) => [['slot', String(granted)], ['len', String(AGENT_LANE_SLOT_BYTES + 1)]], /out of range|bad length/],
  ] as const) {
    const { g, s } = await laneSession(`16 ${AGENT_LANE_SLOT_BYTES}`);
    const read = s.readFile('/x');
    const req = await g.next(T.FILE_READ);
    assert.equal(parseAgentRecords(req.payload).get('lane'), '1');
    g.send(T.FILE_INFO, req.channel, [['type', 'file'], ['size', '10'], ['mode', '644'], ['uid', '0'], ['gid', '0'], ['mtime_ms', '0']]);
    const f = await read;
    const grant = await g.next(T.LANE_FREE);
    const granted = Number(parseAgentRecords(grant.payload).get('slot'));
    g.send(T.LANE, req.channel, lane(granted) as Array<[string, string]>, 1);
    await assert.rejects((async () => {
      for await (const _ of f.body) { /* drain */ }
    })(), protocolError(re), name);
    g.sock.destroy();
  }
  // An upload: returning a slot the host did not lend is a violation.
  {
    const { g, s } = await laneSession(`16 ${AGENT_LANE_SLOT_BYTES}`);
    const write = s.writeFile('/y', Buffer.alloc(10));
    const req = await g.next(T.FILE_WRITE);
    g.send(T.FILE_READY, req.channel, [['window', '0']]);
    const lent = await g.next(T.LANE);
    const slot = Number(parseAgentRecords(lent.payload).get('slot'));
    g.send(T.LANE_FREE, req.channel, [['slot', String((slot + 3) % 16)]]);
    await assert.rejects(write, protocolError(/LANE_FREE \d+ on write channel \d+: not a slot lent to it/));
    g.sock.destroy();
  }
  // A malformed lane record fails the handshake.
  {
    const { guest, host } = await socketPair();
    const g = new FakeGuest(guest);
    const [r] = await Promise.allSettled([AgentSession.open(host, { label: 'fake', lane }), g.handshake([['lane', 'lots']])]);
    assert.ok(r.status === 'rejected' && isMonocoreError(r.reason, 'MC_AGENT_PROTOCOL_ERROR') && /lane=/.test(r.reason.message));
    g.sock.destroy();
  }
  await lane.close();
});
