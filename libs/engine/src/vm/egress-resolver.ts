import { randomInt } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, type Server, type Socket } from 'node:net';
import * as dns from 'dns-packet';
import { egressBlockedRange, type EgressAllowList } from './egress-allow-list.js';

/**
 * The DNS forwarder of one guest with an egress allow-list (docs/NETWORK.md,
 * "Allow-lists"). It is the only resolver the guest can reach, and it is where
 * names turn into permissions:
 *
 * - a name not on the list is answered REFUSED and never leaves the host, so no
 *   data can be smuggled out in query names;
 * - an allowed name is asked upstream as a fresh A query (nothing of the guest's
 *   packet is passed on); the answer's CNAME chain must stay on the list, and
 *   addresses in blocked ranges (private, loopback, link-local, CGNAT, multicast)
 *   are dropped — an answer left with none is REFUSED;
 * - the remaining addresses are admitted into the guest's filter (for their TTL,
 *   clamped) before the answer is sent, so the guest's first connection passes.
 *
 * Only A queries are forwarded: the way out is IPv4, so AAAA and every other type
 * get an empty answer (NODATA). Served over UDP (answers over 512 bytes are
 * truncated, TC) and TCP, on sockets made inside the guest's egress namespace.
 */

export interface Upstream {
  address: string;
  /** Default 53. */
  port?: number;
}

export interface Admission {
  address: string;
  /** How long the filter keeps the address open, in seconds. */
  timeoutS: number;
}

export interface EgressResolverOptions {
  allow: EgressAllowList;
  /** Asked in order; the next one when one does not answer in time. */
  upstreams: readonly Upstream[];
  /** Opens the guest's filter for these addresses; the answer is sent only once it resolved. */
  admit: (addresses: readonly Admission[]) => Promise<void>;
  /** A refused query (for the operator's log). */
  onRefused?: (name: string, reason: string) => void;
  /** Per upstream attempt (default 2000 ms). */
  upstreamTimeoutMs?: number;
}

/** Bounds of the time an answered address stays open (a TTL of 0 still lets the connection that asked for it start). */
export const ADMIT_MIN_S = 30;
export const ADMIT_MAX_S = 3600;
const MAX_CHAIN = 8;
const MAX_INFLIGHT = 64;
const MAX_TCP_CONNECTIONS = 16;
const TCP_IDLE_MS = 10_000;
const UDP_ANSWER_MAX = 512;

type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED';
const RCODE: Record<Rcode, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

type Rr = dns.Answer & { name: string; ttl?: number; data?: unknown };

const norm = (name: string): string => name.toLowerCase().replace(/\.$/, '');
const clampTtl = (ttl: number | undefined): number => Math.min(Math.max(ttl ?? 0, ADMIT_MIN_S), ADMIT_MAX_S);

export class EgressResolver {
  private inflight = 0;
  private closed = false;
  private readonly tcpConnections = new Set<Socket>();
  private readonly upstreamSockets = new Set<UdpSocket | Socket>();
  private udp?: UdpSocket;
  private tcp?: Server;
  /** Counters for the operator and tests. */
  readonly stats = { queries: 0, refused: 0, forwarded: 0 };

  constructor(private readonly o: EgressResolverOptions) {}

  /** Serves guests on these sockets (already bound, e.g. inside the egress namespace). */
  serve(udp: UdpSocket, tcp: Server): void {
    this.udp = udp;
    this.tcp = tcp;
    udp.on('error', () => undefined);
    udp.on('message', (msg, from) => {
      void this.answer(msg, 'udp').then((reply) => {
        if (reply && !this.closed) udp.send(reply, from.port, from.address);
      });
    });
    tcp.on('error', () => undefined);
    tcp.on('connection', (sock) => this.serveTcp(sock));
  }

  /** Stops serving and abandons upstream queries in flight. */
  close(): void {
    this.closed = true;
    try {
      this.udp?.close();
    } catch {
      // already closed
    }
    this.tcp?.close();
    for (const s of this.tcpConnections) s.destroy();
    for (const s of this.upstreamSockets) closeQuietly(s);
  }

  private serveTcp(sock: Socket): void {
    if (this.closed || this.tcpConnections.size >= MAX_TCP_CONNECTIONS) return void sock.destroy();
    this.tcpConnections.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on('error', () => undefined);
    sock.on('close', () => this.tcpConnections.delete(sock));
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        void this.answer(msg, 'tcp').then((reply) => {
          if (!reply || sock.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(reply.length);
          sock.write(Buffer.concat([len, reply]));
        });
      }
    });
  }

  /** The answer to one query message (a UDP payload or a TCP frame); undefined: send nothing. */
  async answer(msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let q: dns.DecodedPacket;
    try {
      q = dns.decode(msg);
    } catch {
      return undefined; // not DNS: nothing to answer
    }
    if (q.type !== 'query' || this.closed) return undefined;
    this.stats.queries++;
    const question = q.questions?.[0];
    const reply = (rcode: Rcode, answers: dns.Answer[] = [], truncated = false): Buffer => {
      const flags = (q.flags ?? 0) & dns.RECURSION_DESIRED;
      const encoded = dns.encode({
        type: 'response',
        id: q.id ?? 0,
        flags: flags | dns.RECURSION_AVAILABLE | RCODE[rcode] | (truncated ? dns.TRUNCATED_RESPONSE : 0),
        questions: question ? [question] : [],
        answers,
      });
      return transport === 'udp' && encoded.length > UDP_ANSWER_MAX ? reply(rcode, [], true) : encoded;
    };
    if (((q.flags ?? 0) >> 11) & 0xf) return reply('NOTIMP'); // not a standard QUERY
    if (q.questions?.length !== 1 || !question) return reply('FORMERR');
    if ((question.class ?? 'IN') !== 'IN') return reply('REFUSED');
    const name = norm(question.name);
    if (!this.o.allow.allowsName(name)) return reply(this.refuse(name, 'not in the allow-list'));
    if (question.type !== 'A') return reply('NOERROR');
    if (this.inflight >= MAX_INFLIGHT) return reply('SERVFAIL');
    this.inflight++;
    try {
      const outcome = await this.resolve(name);
      return reply(outcome.rcode, outcome.answers);
    } catch {
      return reply('SERVFAIL');
    } finally {
      this.inflight--;
    }
  }

  private refuse(name: string, reason: string): 'REFUSED' {
    this.stats.refused++;
    this.o.onRefused?.(name, reason);
    return 'REFUSED';
  }

  /** Asks upstream for `name` (allowed) and keeps only what the policy lets the guest see. */
  private async resolve(name: string): Promise<{ rcode: Rcode; answers: dns.Answer[] }> {
    const res = await this.forward(name);
    this.stats.forwarded++;
    if (res.rcode === 'NXDOMAIN') return { rcode: 'NXDOMAIN', answers: [] };
    if (res.rcode !== 'NOERROR') return { rcode: 'SERVFAIL', answers: [] };
    const records = (res.answers ?? []) as Rr[];
    // Follow the chain from the name asked: every name on it must be allowed too,
    // else a CNAME would hand the guest addresses chosen by a zone nobody allowed.
    const chain: Rr[] = [];
    let current = name;
    for (;;) {
      const cname = records.find((r) => r.type === 'CNAME' && norm(r.name) === current);
      if (!cname) break;
      const target = norm(String(cname.data));
      if (!this.o.allow.allowsName(target)) return { rcode: this.refuse(name, `CNAME to ${target}, which is not in the allow-list`), answers: [] };
      if (chain.length >= MAX_CHAIN) return { rcode: 'SERVFAIL', answers: [] };
      chain.push(cname);
      current = target;
    }
    const addresses = records.filter((r) => r.type === 'A' && norm(r.name) === current);
    const usable = addresses.filter((r) => egressBlockedRange(String(r.data)) === undefined);
    const blocked = addresses.filter((r) => !usable.includes(r));
    if (blocked.length > 0 && usable.length === 0) {
      return { rcode: this.refuse(name, `answered ${blocked.map((r) => `${String(r.data)} (${egressBlockedRange(String(r.data))})`).join(', ')}`), answers: [] };
    }
    if (blocked.length > 0) this.o.onRefused?.(name, `answer ${blocked.map((r) => String(r.data)).join(', ')} dropped (blocked range)`);
    if (usable.length > 0) await this.o.admit(usable.map((r) => ({ address: String(r.data), timeoutS: clampTtl(r.ttl) })));
    // The guest may cache an answer at most as long as the filter keeps it open.
    const capped = [...chain, ...usable].map((r) => ({ ...r, ttl: Math.min(r.ttl ?? 0, ADMIT_MAX_S) }) as dns.Answer);
    return { rcode: 'NOERROR', answers: capped };
  }

  /** A fresh A query for `name`, to each upstream in turn (TCP when the UDP answer is truncated). */
  private async forward(name: string): Promise<dns.DecodedPacket & { rcode?: string }> {
    const query = dns.encode({
      type: 'query',
      id: randomInt(0, 65536),
      flags: dns.RECURSION_DESIRED,
      questions: [{ type: 'A', class: 'IN', name }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as dns.Answer],
    });
    const id = query.readUInt16BE(0);
    const matches = (p: dns.DecodedPacket): boolean =>
      p.type === 'response' && p.id === id && p.questions?.length === 1 && norm(p.questions[0]!.name) === name && p.questions[0]!.type === 'A';
    let lastError: Error = new Error('no upstream resolver');
    for (const up of this.o.upstreams) {
      if (this.closed) break;
      try {
        let res = await this.askUdp(query, up, matches);
        if (res.flag_tc) res = await this.askTcp(query, up, matches);
        return res as dns.DecodedPacket & { rcode?: string };
      } catch (err) {
        lastError = err as Error;
      }
    }
    throw lastError;
  }

  private askUdp(query: Buffer, up: Upstream, matches: (p: dns.DecodedPacket) => boolean): Promise<dns.DecodedPacket> {
    return new Promise((resolve, reject) => {
      const sock = createSocket(up.address.includes(':') ? 'udp6' : 'udp4');
      this.upstreamSockets.add(sock);
      const done = (err: Error | undefined, p?: dns.DecodedPacket): void => {
        clearTimeout(timer);
        this.upstreamSockets.delete(sock);
        closeQuietly(sock);
        if (err) reject(err);
        else resolve(p!);
      };
      const timer = setTimeout(() => done(new Error(`${up.address}: no answer`)), this.o.upstreamTimeoutMs ?? 2000);
      sock.on('error', (e) => done(e));
      // Connected: datagrams from any other address are not delivered; others that do not match are ignored.
      sock.on('message', (m) => {
        try {
          const p = dns.decode(m);
          if (matches(p)) done(undefined, p);
        } catch {
          // not DNS: keep waiting
        }
      });
      sock.connect(up.port ?? 53, up.address, () => sock.send(query));
    });
  }

  private askTcp(query: Buffer, up: Upstream, matches: (p: dns.DecodedPacket) => boolean): Promise<dns.DecodedPacket> {
    return new Promise((resolve, reject) => {
      const sock = connect(up.port ?? 53, up.address);
      this.upstreamSockets.add(sock);
      let buf = Buffer.alloc(0);
      const done = (err: Error | undefined, p?: dns.DecodedPacket): void => {
        clearTimeout(timer);
        this.upstreamSockets.delete(sock);
        sock.destroy();
        if (err) reject(err);
        else resolve(p!);
      };
      const timer = setTimeout(() => done(new Error(`${up.address}: no answer over TCP`)), this.o.upstreamTimeoutMs ?? 2000);
      sock.on('error', (e) => done(e));
      sock.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(query.length);
        sock.write(Buffer.concat([len, query]));
      });
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
        try {
          const p = dns.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          done(matches(p) ? undefined : new Error(`${up.address}: answer does not match the query`), p);
        } catch (e) {
          done(e as Error);
        }
      });
    });
  }
}

function closeQuietly(s: UdpSocket | Socket): void {
  try {
    if ('destroy' in s) s.destroy();
    else s.close();
  } catch {
    // already closed
  }
}
