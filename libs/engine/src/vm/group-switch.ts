import { unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A learning Ethernet switch for one group's private L2 segment, in process.
 * Each VM gets a connected unix socket from connectPort() and QEMU uses it as
 * `-netdev socket,fd=N`; the stream carries each frame as a 4-byte big-endian
 * length + the frame.
 *
 * Isolation by construction: one switch per group, nothing else is attached
 * (no uplink, no host interface), so a group's frames can reach only the
 * group's VMs. Each port may be pinned to the MAC the backend assigned to that
 * VM: frames with another source MAC are dropped, so a guest cannot
 * impersonate a peer at L2.
 */
export class GroupSwitch {
  private readonly ports = new Set<Port>();
  private readonly macTable = new Map<string, Port>();
  private readonly server: Server;

  private constructor(readonly socketPath: string, server: Server) {
    this.server = server;
  }

  static async listen(socketPath: string): Promise<GroupSwitch> {
    const server = createServer();
    const sw = new GroupSwitch(socketPath, server);
    server.on('connection', (sock) => sw.attach(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return sw;
  }


  get portCount(): number {
    return this.ports.size;
  }

  /**
   * Opens a port for one VM and returns the connected client end, whose fd is
   * handed to QEMU (`-netdev socket,fd=N`): already connected, so the guest's
   * link is up from the first frame (QEMU 7.2's `-netdev stream` client left
   * virtio-net at NO-CARRIER here). The port is pinned to `mac`: the first
   * bytes on the wire register it, and frames with any other source MAC are
   * dropped, so a guest cannot impersonate a peer.
   */
  async connectPort(mac: string): Promise<Socket> {
    const sock = connect(this.socketPath);
    sock.pause(); // never read here: every byte from the switch belongs to QEMU
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve();
      });
    });
    const hello = Buffer.from(`${HELLO}${mac.toLowerCase()}\n`, 'ascii');
    await new Promise<void>((resolve, reject) => sock.write(hello, (e) => (e ? reject(e) : resolve())));
    return sock;
  }

  private attach(sock: Socket): void {
    const port: Port = { sock, buf: Buffer.alloc(0), macs: new Set() };
    this.ports.add(port);
    sock.on('data', (chunk: Buffer) => {
      port.buf = port.buf.length ? Buffer.concat([port.buf, chunk]) : chunk;
      if (port.mac === undefined) {
        if (port.buf.length < HELLO_LEN) return;
        const hello = port.buf.subarray(0, HELLO_LEN).toString('ascii');
        if (!hello.startsWith(HELLO) || !hello.endsWith('\n')) {
          sock.destroy(); // not one of ours
          return;
        }
        port.mac = hello.slice(HELLO.length, -1);
        port.buf = port.buf.subarray(HELLO_LEN);
      }
      while (port.buf.length >= 4) {
        const len = port.buf.readUInt32BE(0);
        if (len > 65535 + 18) {
          sock.destroy(); // not a sane Ethernet frame: drop the port
          return;
        }
        if (port.buf.length < 4 + len) break;
        const frame = port.buf.subarray(4, 4 + len);
        port.buf = port.buf.subarray(4 + len);
        this.forward(port, frame);
      }
    });
    const drop = (): void => {
      this.ports.delete(port);
      for (const mac of port.macs) if (this.macTable.get(mac) === port) this.macTable.delete(mac);
    };
    sock.on('close', drop);
    sock.on('error', drop);
  }

  private forward(from: Port, frame: Buffer): void {
    if (frame.length < 14) return;
    const dst = macString(frame, 0);
    const src = macString(frame, 6);
    if (src !== from.mac) return; // spoofed source: each port may only send as its own MAC
    if (!this.macTable.has(src) || this.macTable.get(src) !== from) {
      this.macTable.set(src, from);
      from.macs.add(src);
    }
    const header = Buffer.alloc(4);
    header.writeUInt32BE(frame.length, 0);
    const out = Buffer.concat([header, frame]);
    const unicast = (frame[0]! & 1) === 0;
    const target = unicast ? this.macTable.get(dst) : undefined;
    if (target) {
      if (target !== from) target.sock.write(out);
      return;
    }
    for (const p of this.ports) if (p !== from && !p.sock.destroyed) p.sock.write(out);
  }

  async close(): Promise<void> {
    for (const p of this.ports) p.sock.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }
}

const HELLO = 'mcport ';
const HELLO_LEN = HELLO.length + 17 + 1; // "mcport " + aa:bb:cc:dd:ee:ff + "\n"

interface Port {
  mac?: string;
  sock: Socket;
  buf: Buffer;
  macs: Set<string>;
}

function macString(b: Buffer, off: number): string {
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push(b[off + i]!.toString(16).padStart(2, '0'));
  return parts.join(':');
}

/** Whether `mac` is a group member's (groupMac): 52:54 + an address; outbound and port-forward NICs use 52:56 and 52:55. */
export function isGroupMac(mac: string): boolean {
  return /^52:54(:[0-9a-f]{2}){4}$/i.test(mac);
}

/** The deterministic MAC of a group member: 52:54 + its IPv4 address (unique in the group). */
export function groupMac(cidr: string): string {
  const ip = cidr.split('/')[0] ?? '';
  const octets = ip.split('.').map((o) => Number(o));
  return ['52', '54', ...octets.map((o) => o.toString(16).padStart(2, '0'))].join(':');
}
