// Guest agent throughput and latency in a real VM (TCG), side by side with the VM's plain
// stdout port (the raw virtio-serial path with no protocol) in the same run.
//   node bench/agent-stream.mjs MB ROOTFS      (npm run bench -- agent-stream 64 "$ROOTFS")
// Prints one JSON line: MB/s of (a) `head -c` on a command VM's stdout port, (b) the same
// through an agent exec, (b') `cat` of a file through an agent exec, (c) writeFile and
// (d) readFile of MB bytes, (e) the median and p90 of 100 sequential `true` execs, and the
// bench process's peak RSS growth while streaming (b).
// Env: MONOCORE_HOME (initramfs cache), MONOCORE_KERNEL_DIR.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { MonocoreHome, QemuBackend } from '../libs/engine/dist/index.js';

const [mbArg, rootfs] = process.argv.slice(2);
const mb = Number(mbArg ?? 64);
const bytes = mb * 1024 * 1024;
const backend = new QemuBackend({ home: new MonocoreHome() });
const dirs = [];
const spec = (id, over = {}) => {
  const stateDir = mkdtempSync(join(tmpdir(), `bench-${id}-`));
  dirs.push(stateDir);
  return { id, rootfs, command: '/bin/true', args: [], env: ['PATH=/bin'], cpus: 1, ramMib: 512, volumes: [], ports: [], stateDir, network: { mode: 'none' }, bootTimeoutMs: 120_000, ...over };
};
const mbps = (ms) => Math.round((mb / (ms / 1000)) * 10) / 10;
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)];
await backend.prepare();

// (a) the stdout port: the guest writes as fast as it can into monocore.stdout.
// Both (a) and (b) are timed from the first byte to the last, so boot and exec start-up are out.
let portMs;
{
  let got = 0;
  let t0 = 0;
  let done;
  const finished = new Promise((r) => (done = r));
  const sink = new Writable({
    write(c, _e, cb) {
      if (got === 0) t0 = performance.now();
      got += c.length;
      if (got >= bytes) done(performance.now());
      cb();
    },
  });
  const h = await backend.start(spec('port', { command: '/bin/head', args: ['-c', String(bytes), '/dev/zero'], stdout: sink }));
  portMs = (await finished) - t0;
  await h.wait();
}

// (b)–(e) through the agent of a sandbox
const h = await backend.start(spec('agent', { sandbox: true, command: '', args: [] }));
await h.started;
const a = await h.agent();
const rss0 = process.resourceUsage().maxRSS;
const p = await a.spawn({ argv: ['head', '-c', String(bytes), '/dev/zero'] });
let got = 0;
let first = 0;
p.stdout.on('data', (d) => {
  if (got === 0) first = performance.now();
  got += d.length;
});
await p.exit;
await new Promise((r) => (p.stdout.readableEnded ? r() : p.stdout.once('end', r)));
const execMs = performance.now() - first;
let t;
if (got !== bytes) throw new Error(`got ${got} of ${bytes}`);
const rssGrowthKb = process.resourceUsage().maxRSS - rss0;

const data = Buffer.alloc(bytes, 7);
t = performance.now();
await a.writeFile('/tmp/blob', data);
const writeMs = performance.now() - t;
t = performance.now();
const f = await a.readFile('/tmp/blob');
let n = 0;
for await (const c of f.body) n += c.length;
const readMs = performance.now() - t;
if (n !== bytes) throw new Error(`read ${n} of ${bytes}`);

// (b') exec output again, from a producer that writes 64 KiB at a time (busybox head -c is
// CPU-bound under TCG: about 5.5 MB/s into /dev/null on its own)
const q = await a.spawn({ argv: ['cat', '/tmp/blob'] });
let got2 = 0;
let first2 = 0;
q.stdout.on('data', (d) => {
  if (got2 === 0) first2 = performance.now();
  got2 += d.length;
});
await q.exit;
await new Promise((r) => (q.stdout.readableEnded ? r() : q.stdout.once('end', r)));
const catMs = performance.now() - first2;
if (got2 !== bytes) throw new Error(`cat gave ${got2} of ${bytes}`);

const rtt = [];
for (let i = 0; i < 100; i++) {
  const t1 = performance.now();
  const r = await a.exec({ argv: ['true'] });
  rtt.push(performance.now() - t1);
  if (r.exitCode !== 0) throw new Error('true failed');
}
await h.stop({ timeoutMs: 20_000 });
for (const d of dirs) rmSync(d, { recursive: true, force: true });
console.log(JSON.stringify({
  mb,
  stdoutPortMBps: mbps(portMs),
  agentExecMBps: mbps(execMs),
  agentExecCatMBps: mbps(catMs),
  agentWriteFileMBps: mbps(writeMs),
  agentReadFileMBps: mbps(readMs),
  execTrueMedianMs: Math.round(pct(rtt, 0.5) * 10) / 10,
  execTrueP90Ms: Math.round(pct(rtt, 0.9) * 10) / 10,
  benchPeakRssGrowthMiB: Math.round(rssGrowthKb / 1024),
}));
