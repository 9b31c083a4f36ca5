// The allow-list resolver against a real DNS server on loopback (UDP and TCP):
// which names are asked upstream at all, what comes back, what is admitted.
import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { after, before, test } from 'node:test';
import * as dns from 'dns-packet';
import { EgressAllowList } from './egress-allow-list.js';
import { EgressResolver, type Admission } from './egress-resolver.js';

interface Zone {
  [name: string]: { a?: string[]; cname?: string; ttl?: number; rcode?: number; udpTruncated?: boolean };
}

const zone: Zone = {
  'ok.test': { a: ['198.18.0.2'], ttl: 5 },
  'long.test': { a: ['198.18.0.9'], ttl: 86400 },
  'alias.test': { cname: 'ok.test' },
  'bad-alias.test': { cname: 'evil.test' },
  'evil.test': { a: ['198.18.0.66'] },
  'private.test': { a: ['10.250.0.2', '169.254.169.254'] },
  'mixed.test': { a: ['10.250.0.3', '198.18.0.7'] },
  'gone.test': { rcode: 3 },
  'big.test': { a: Array.from({ length: 40 }, (_, i) => `198.18.1.${i + 1}`), udpTruncated: true },
  'loop.test': { cname: 'loop.test' },
};

/** A recursive resolver's answer: the CNAME chain, then the final name's A records. */
function respond(query: Buffer, transport: 'udp' | 'tcp'): Buffer {
  const q = dns.decode(query);
  const question = q.questions![0]!;
  const answers: dns.Answer[] = [];
  let name = question.name.toLowerCase();
  let rcode = 0;
  for (let hops = 0; hops < 10; hops++) {
    const entry = zone[name];
    if (!entry) {
      rcode = answers.length === 0 ? 3 : 0;
      break;
    }
    if (entry.rcode !== undefined) rcode = entry.rcode;
    if (entry.cname) {
      answers.push({ type: 'CNAME', name, ttl: entry.ttl ?? 60, data: entry.cname });
      name = entry.cname;
      continue;
    }
    for (const a of entry.a ?? []) answers.push({ type: 'A', name, ttl: entry.ttl ?? 60, data: a });
    if (entry.udpTruncated && transport === 'udp') {
      return dns.encode({ type: 'response', id: q.id, flags: dns.TRUNCATED_RESPONSE, questions: q.questions, answers: [] });
    }
    break;
  }
  return dns.encode({ type: 'response', id: q.id, flags: dns.RECURSION_AVAILABLE | rcode, questions: q.questions, answers });
}

const asked: string[] = [];
let upstreamUdp: UdpSocket;
let upstreamTcp: Server;
let silent: UdpSocket;
let port: number;

before(async () => {
  upstreamUdp = createSocket('udp4');
  upstreamUdp.on('message', (m, from) => {
    asked.push(`udp ${dns.decode(m).questions![0]!.name}`);
    upstreamUdp.send(respond(m, 'udp'), from.port, from.address);
  });
  await new Promise<void>((r) => upstreamUdp.bind(0, '127.0.0.1', r));
  port = upstreamUdp.address().port;
  upstreamTcp = createServer((sock) => {
    sock.once('data', (d: Buffer) => {
      const m = d.subarray(2, 2 + d.readUInt16BE(0));
      asked.push(`tcp ${dns.decode(m).questions![0]!.name}`);
      const r = respond(m, 'tcp');
      const len = Buffer.alloc(2);
      len.writeUInt16BE(r.length);
      sock.end(Buffer.concat([len, r]));
    });
  });
  await new Promise<void>((r) => upstreamTcp.listen(port, '127.0.0.1', r));
  silent = createSocket('udp4'); // an upstream that never answers
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
});

after(() => {
  upstreamUdp.close();
  upstreamTcp.close();
  silent.close();
});

const allow = EgressAllowList.parse(['ok.test', 'long.test', 'alias.test', 'bad-alias.test', 'private.test', 'mixed.test', 'gone.test', 'big.test', 'loop.test', '*.wild.test']);

function resolver(admitted: Admission[][], opts: { failAdmit?: boolean; upstreams?: Array<{ address: string; port?: number }> } = {}): { r: EgressResolver; refused: string[] } {
  const refused: string[] = [];
  const r = new EgressResolver({
    allow,
    upstreams: opts.upstreams ?? [{ address: '127.0.0.1', port }],
    admit: async (a) => {
      if (opts.failAdmit) throw new Error('nft failed');
      admitted.push([...a]);
    },
    onRefused: (name, reason) => refused.push(`${name}: ${reason}`),
    upstreamTimeoutMs: 300,
  });
  return { r, refused };
}

const query = (name: string, type: dns.RecordType = 'A', extra: Partial<dns.Packet> = {}): Buffer =>
  dns.encode({ type: 'query', id: 4242, flags: dns.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }], ...extra });

async function ask(r: EgressResolver, name: string, type: dns.RecordType = 'A', transport: 'udp' | 'tcp' = 'udp'): Promise<dns.DecodedPacket & { rcode?: string }> {
  const reply = await r.answer(query(name, type), transport);
  assert.ok(reply, `an answer for ${name}`);
  const p = dns.decode(reply) as dns.DecodedPacket & { rcode?: string };
  assert.equal(p.id, 4242);
  assert.equal(p.type, 'response');
  return p;
}

/** An answer record's fields (the union type includes OPT, which has none of them). */
const rr = (a: dns.Answer): { type: string; name: string; ttl?: number; data?: unknown } => a as never;
const addresses = (p: dns.DecodedPacket): string[] => (p.answers ?? []).map(rr).filter((a) => a.type === 'A').map((a) => String(a.data));

test('an allowed name is forwarded; its addresses are admitted (TTL clamped to 30 s..1 h) before the answer', async () => {
  const admitted: Admission[][] = [];
  const { r } = resolver(admitted);
  asked.length = 0;
  const p = await ask(r, 'OK.test');
  assert.equal(p.rcode, 'NOERROR');
  assert.deepEqual(addresses(p), ['198.18.0.2']);
  assert.deepEqual(admitted, [[{ address: '198.18.0.2', timeoutS: 30 }]]);
  assert.deepEqual(asked, ['udp ok.test'], 'a fresh query for the lowercased name');
  const long = await ask(r, 'long.test');
  assert.deepEqual(admitted[1], [{ address: '198.18.0.9', timeoutS: 3600 }]);
  assert.equal(rr(long.answers![0]!).ttl, 3600, 'the guest caches no longer than the filter keeps the address open');
  const wild = await ask(r, 'a.b.wild.test');
  assert.equal(wild.rcode, 'NXDOMAIN', 'a wildcard name is forwarded (the zone has none): NXDOMAIN passes through');
});

test('a name not on the list is REFUSED and never asked upstream', async () => {
  const admitted: Admission[][] = [];
  const { r, refused } = resolver(admitted);
  asked.length = 0;
  for (const name of ['evil.test', 'secret-data.evil.test', 'wild.test', 'xok.test', 'ok.test.evil.test']) {
    assert.equal((await ask(r, name)).rcode, 'REFUSED', name);
  }
  assert.deepEqual(asked, []);
  assert.deepEqual(admitted, []);
  assert.equal(refused.length, 5);
  assert.equal(r.stats.refused, 5);
});

test('CNAME chains: to an allowed name answered; to a name not on the list REFUSED; a loop fails', async () => {
  const admitted: Admission[][] = [];
  const { r, refused } = resolver(admitted);
  const ok = await ask(r, 'alias.test');
  assert.equal(ok.rcode, 'NOERROR');
  assert.deepEqual(ok.answers?.map(rr).map((a) => `${a.type} ${a.name} ${String(a.data)}`), ['CNAME alias.test ok.test', 'A ok.test 198.18.0.2']);
  const bad = await ask(r, 'bad-alias.test');
  assert.equal(bad.rcode, 'REFUSED');
  assert.deepEqual(bad.answers, []);
  assert.deepEqual(refused, ['bad-alias.test: CNAME to evil.test, which is not in the allow-list']);
  assert.deepEqual(admitted, [[{ address: '198.18.0.2', timeoutS: 30 }]], '198.18.0.66 (evil.test) was never admitted');
  assert.equal((await ask(r, 'loop.test')).rcode, 'SERVFAIL');
});

test('private, link-local answers are refused and never admitted; a mixed answer keeps only public addresses', async () => {
  const admitted: Admission[][] = [];
  const { r, refused } = resolver(admitted);
  const p = await ask(r, 'private.test');
  assert.equal(p.rcode, 'REFUSED');
  assert.deepEqual(p.answers, []);
  assert.match(refused[0] ?? '', /^private\.test: answered 10\.250\.0\.2 \(10\.0\.0\.0\/8 \(private\)\), 169\.254\.169\.254/);
  const m = await ask(r, 'mixed.test');
  assert.deepEqual(addresses(m), ['198.18.0.7']);
  assert.deepEqual(admitted, [[{ address: '198.18.0.7', timeoutS: 60 }]]);
});

test('only A is forwarded: AAAA and other types get an empty answer; junk, responses and odd queries are not forwarded', async () => {
  const admitted: Admission[][] = [];
  const { r } = resolver(admitted);
  asked.length = 0;
  for (const t of ['AAAA', 'TXT', 'MX', 'ANY'] as dns.RecordType[]) {
    const p = await ask(r, 'ok.test', t);
    assert.equal(p.rcode, 'NOERROR', t);
    assert.deepEqual(p.answers, [], t);
  }
  assert.equal((await ask(r, 'evil.test', 'TXT')).rcode, 'REFUSED', 'the name is checked first, whatever the type');
  assert.equal(await r.answer(Buffer.from('not dns at all'), 'udp'), undefined);
  assert.equal(await r.answer(dns.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'ok.test' }] }), 'udp'), undefined);
  const two = dns.decode((await r.answer(query('ok.test', 'A', { questions: [{ type: 'A', name: 'ok.test' }, { type: 'A', name: 'evil.test' }] }), 'udp'))!) as { rcode?: string };
  assert.equal(two.rcode, 'FORMERR');
  const chaos = dns.decode((await r.answer(query('ok.test', 'A', { questions: [{ type: 'A', name: 'ok.test', class: 'CH' }] }), 'udp'))!) as { rcode?: string };
  assert.equal(chaos.rcode, 'REFUSED');
  assert.deepEqual(asked, []);
  assert.deepEqual(admitted, []);
});

test('upstream: TCP when the UDP answer is truncated; the next resolver when one is silent; SERVFAIL when admitting fails', async () => {
  const admitted: Admission[][] = [];
  const { r } = resolver(admitted, { upstreams: [{ address: '127.0.0.1', port: silent.address().port }, { address: '127.0.0.1', port }] });
  asked.length = 0;
  const tcp = await ask(r, 'big.test', 'A', 'tcp');
  assert.equal(addresses(tcp).length, 40);
  assert.deepEqual(asked, ['udp big.test', 'tcp big.test']);
  const udp = await ask(r, 'big.test', 'A', 'udp');
  assert.equal(udp.flag_tc, true, 'too big for a 512-byte UDP answer: truncated, the guest retries over TCP');
  assert.deepEqual(udp.answers, []);
  const failing = resolver([], { failAdmit: true }).r;
  assert.equal((await ask(failing, 'ok.test')).rcode, 'SERVFAIL', 'never an answer the filter would not honour');
  const none = resolver([], { upstreams: [{ address: '127.0.0.1', port: silent.address().port }] }).r;
  assert.equal((await ask(none, 'ok.test')).rcode, 'SERVFAIL');
});

test('serve(): UDP and TCP guests on real sockets; close() stops both', async () => {
  const admitted: Admission[][] = [];
  const { r } = resolver(admitted);
  const udp = createSocket('udp4');
  await new Promise<void>((res) => udp.bind(0, '127.0.0.1', res));
  const tcp = createServer();
  await new Promise<void>((res) => tcp.listen(0, '127.0.0.1', res));
  r.serve(udp, tcp);
  const client = createSocket('udp4');
  const viaUdp = await new Promise<dns.DecodedPacket>((res) => {
    client.once('message', (m) => res(dns.decode(m)));
    client.send(query('ok.test'), udp.address().port, '127.0.0.1');
  });
  client.close();
  assert.deepEqual(addresses(viaUdp), ['198.18.0.2']);
  // Two queries in one TCP segment, answered each in its own frame.
  const viaTcp = await new Promise<dns.DecodedPacket[]>((res, rej) => {
    const sock = connect((tcp.address() as AddressInfo).port, '127.0.0.1');
    const frame = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]);
    let buf = Buffer.alloc(0);
    const out: dns.DecodedPacket[] = [];
    sock.on('error', rej);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(dns.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length === 2) {
        sock.destroy();
        res(out);
      }
    });
    sock.write(Buffer.concat([frame(query('alias.test')), frame(query('evil.test'))]));
  });
  assert.deepEqual(viaTcp.map((p) => (p as { rcode?: string }).rcode).sort(), ['NOERROR', 'REFUSED']);
  r.close();
  await assert.rejects(
    new Promise((res, rej) => {
      const sock = connect((tcp.address() as AddressInfo | null)?.port ?? 1, '127.0.0.1');
      sock.on('connect', () => res(sock.destroy()));
      sock.on('error', rej);
    }),
    'the TCP listener is closed',
  );
});
