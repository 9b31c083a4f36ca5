/**
 * The "wan" namespace's DNS server for test/vm/egress.test.ts (run there with
 * `ip netns exec`): answers like a recursive resolver (CNAME chain, then the
 * final name's A records) from the zone below, and prints every question it
 * receives as `query <name> <type>`, so the test can check which names ever
 * left the host. `flip.test` answers a public address until someone asks for
 * `flip-now.test`, then a private one: a name whose answer changes.
 */
import { createSocket } from 'node:dgram';
import * as dns from 'dns-packet';

const zone: Record<string, { a?: string; cname?: string; ttl?: number }> = {
  'wan.test': { a: '198.18.0.2' },
  'allowed.test': { a: '198.18.0.2' },
  'direct.test': { a: '198.18.0.2' },
  'other.test': { a: '198.18.1.3' },
  'alias.test': { cname: 'other.test' },
  'a.cdn.test': { a: '198.18.1.9' },
  'private.test': { a: '10.250.0.2' },
  'flip.test': { a: '198.18.1.5', ttl: 1 },
};
let flipped = false;

const server = createSocket('udp4');
server.on('message', (msg, from) => {
  let q: dns.DecodedPacket;
  try {
    q = dns.decode(msg);
  } catch {
    return;
  }
  const question = q.questions?.[0];
  if (!question) return;
  process.stdout.write(`query ${question.name.toLowerCase()} ${question.type}\n`);
  let name = question.name.toLowerCase();
  if (name === 'flip-now.test') {
    flipped = true;
    zone['flip.test'] = { a: '10.250.0.2', ttl: 1 };
  }
  const answers: dns.Answer[] = [];
  let rcode = 3; // NXDOMAIN unless the name is in the zone
  for (let hops = 0; hops < 8; hops++) {
    const entry = zone[name];
    if (!entry) break;
    rcode = 0;
    if (entry.cname) {
      answers.push({ type: 'CNAME', name, ttl: entry.ttl ?? 60, data: entry.cname });
      name = entry.cname;
      continue;
    }
    if (entry.a && question.type === 'A') answers.push({ type: 'A', name, ttl: entry.ttl ?? 60, data: entry.a });
    break;
  }
  server.send(dns.encode({ type: 'response', id: q.id, flags: dns.RECURSION_AVAILABLE | rcode, questions: q.questions, answers }), from.port, from.address);
});
server.bind(53, process.argv[2] ?? '198.18.0.2', () => process.stdout.write(`listening flipped=${flipped}\n`));
