// What an egress allow-list costs: opening/closing a VM's outbound network with and
// without one, and DNS answers through the allow-list resolver vs asking the upstream
// directly. Runs as root, entirely inside a network namespace it creates (its nftables
// table, ip_forward and egress namespaces live there, never on the host); the upstream
// is test/vm/wan-dns-server.ts (compiled to dist/) on that namespace's loopback. No QEMU: the guest's side
// is a client in the egress namespace, where passt would make the guest's sockets.
//
//   npx tsc -b && node bench/egress-allow.mjs [rounds]
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const rounds = Number(process.argv[2] ?? 10);
const repo = fileURLToPath(new URL('..', import.meta.url));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs) => `median ${median(xs).toFixed(1)} ms (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`;

if (process.argv[3] === '--inside') {
  // In the bench namespace: time EgressNetwork.open/close, then DNS from inside an egress namespace.
  const { EgressNetwork } = await import(`${repo}libs/engine/dist/vm/egress-network.js`);
  const { EgressAllowList } = await import(`${repo}libs/engine/dist/vm/egress-allow-list.js`);
  const allow = EgressAllowList.parse(['allowed.test', 'flip.test', '198.18.1.64/26']);
  const time = async (opts) => {
    const t0 = performance.now();
    const net = await EgressNetwork.open('bench', opts);
    const opened = performance.now() - t0;
    const t1 = performance.now();
    await net.close();
    return [opened, performance.now() - t1];
  };
  await time({}); // warm: the host table
  const plain = [];
  const listed = [];
  for (let i = 0; i < rounds; i++) {
    plain.push(await time({}));
    listed.push(await time({ allow }));
  }
  const net = await EgressNetwork.open('bench', { allow });
  // A client in the egress namespace asks the gateway (redirected to the resolver) or the upstream directly
  // (which the filter drops for a guest; here the client asks from the bench namespace instead).
  const client = `
    const dgram = require('node:dgram');
    const [server, names, n] = [process.argv[1], process.argv[2].split(','), Number(process.argv[3])];
    const ask = (name) => new Promise((res) => {
      const s = dgram.createSocket('udp4'); const q = Buffer.alloc(12 + name.length + 6);
      q.writeUInt16BE(Math.floor(Math.random() * 65536), 0); q.writeUInt16BE(0x0100, 2); q.writeUInt16BE(1, 4);
      let o = 12; for (const l of name.split('.')) { q[o++] = l.length; o += q.write(l, o); } q[o++] = 0; q.writeUInt16BE(1, o); q.writeUInt16BE(1, o + 2);
      const t0 = performance.now(); s.on('message', (m) => { s.close(); res([performance.now() - t0, m[3] & 15]); }); s.send(q, 53, server);
    });
    (async () => { const out = {}; for (const name of names) { out[name] = []; for (let i = 0; i < n; i++) out[name].push(await ask(name)); } console.log(JSON.stringify(out)); })();`;
  // (Asynchronously: the resolver answers from this very process.)
  const run = promisify(execFile);
  const viaResolver = JSON.parse((await run('ip', ['netns', 'exec', net.namespace, process.execPath, '-e', client, net.guest.gateway, 'allowed.test,other.test', String(rounds)], { timeout: 60_000 })).stdout);
  const direct = JSON.parse((await run(process.execPath, ['-e', client, '127.0.0.1', 'allowed.test', String(rounds)], { timeout: 60_000 })).stdout);
  await net.close();
  console.log(JSON.stringify({ plain, listed, viaResolver, direct }));
  process.exit(0);
}

if (process.getuid() !== 0) throw new Error('bench/egress-allow.mjs needs root (network namespaces, nftables)');
const ns = `mc-bench-eg-${process.pid}`;
execFileSync('ip', ['netns', 'add', ns]);
execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
mkdirSync(`/etc/netns/${ns}`, { recursive: true });
writeFileSync(`/etc/netns/${ns}/resolv.conf`, 'nameserver 127.0.0.1\n');
const dns = spawn('ip', ['netns', 'exec', ns, process.execPath, `${repo}dist/test/vm/wan-dns-server.js`, '127.0.0.1'], { stdio: ['ignore', 'pipe', 'inherit'] });
try {
  await new Promise((r) => dns.stdout.once('data', r));
  dns.stdout.resume();
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, fileURLToPath(import.meta.url), String(rounds), '--inside'], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(r.stderr);
  const res = JSON.parse(r.stdout.trim().split('\n').pop());
  const col = (pairs, i) => pairs.map((p) => p[i]);
  const ms = (xs) => xs.map((x) => x[0]);
  console.log(`rounds: ${rounds}`);
  console.log(`open  outbound, no allow-list:   ${fmt(col(res.plain, 0))}`);
  console.log(`open  outbound, with allow-list: ${fmt(col(res.listed, 0))}`);
  console.log(`close outbound, no allow-list:   ${fmt(col(res.plain, 1))}`);
  console.log(`close outbound, with allow-list: ${fmt(col(res.listed, 1))}`);
  const allowed = res.viaResolver['allowed.test'];
  console.log(`DNS allowed name via resolver, 1st (upstream + nft admit): ${allowed[0][0].toFixed(1)} ms, rcode ${allowed[0][1]}`);
  console.log(`DNS allowed name via resolver, later (upstream, admit skipped): ${fmt(ms(allowed.slice(1)))}`);
  console.log(`DNS refused name via resolver (never upstream): ${fmt(ms(res.viaResolver['other.test']))}, rcode ${res.viaResolver['other.test'][0][1]}`);
  console.log(`DNS allowed name asked of the upstream directly: ${fmt(ms(res.direct['allowed.test']))}`);
} finally {
  dns.kill('SIGKILL');
  spawnSync('ip', ['netns', 'del', ns]);
  rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
}
