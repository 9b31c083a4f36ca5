#!/usr/bin/env node
// Benchmark: which read-only filesystem for an image's root block device — erofs
// (uncompressed, and lz4) or ext4 (`mkfs.ext4 -d` on a sparse file) — measured on the
// same ~220 MB, ~9,800-file tree:
//   build    wall and CPU time of the mkfs, each run into a freshly made ext4 (bench/support/fresh-fs.mjs)
//   size     apparent size and blocks allocated of the image file
//   read     in a real TCG guest: every file under /usr read once (find | xargs cat), timed by the guest's uptime
//   boot     wall time of a VM running `true` from spawn to QEMU gone, and the guest uptime at exec
// Boots use the engine's own QEMU command line (qemuArgs), initramfs and guest init, with the
// image as the "image" device and the guest told its filesystem type (spec record image=).
//
//   npx tsc -b && . .monocore-test/env.sh && node bench/block-root.mjs [runs=3] [boots=5]
//
// As root (loop mounts for fresh filesystems). Variants run interleaved.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshFsFactory } from './support/fresh-fs.mjs';
import { MonocoreHome, QemuBackend } from '../libs/engine/dist/index.js';
import { qemuArgs } from '../libs/engine/dist/vm/qemu-args.js';
import { encodeGuestSpec } from '../libs/engine/dist/vm/guest-protocol.js';
import { hostTscKhz } from '../libs/engine/dist/vm/acceleration.js';

const runs = Number(process.argv[2] ?? 3);
const boots = Number(process.argv[3] ?? 5);
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'out', 'block-root');
mkdirSync(out, { recursive: true });
const DIRS = [
  'usr/lib/python3.11', 'usr/share/perl', 'usr/lib/x86_64-linux-gnu/perl', 'usr/lib/x86_64-linux-gnu/dri', 'usr/share/qemu',
  'usr/lib/python3/dist-packages', 'usr/lib/x86_64-linux-gnu/gconv', 'usr/share/i18n', 'usr/share/zoneinfo',
];
const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20, ...opts }).toString();
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const fmt = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);

// The tree: host files plus a static busybox so the guest has a shell, on its own filesystem.
const srcFs = join(out, 'src');
const tree = join(srcFs, 'tree');
mkdirSync(srcFs, { recursive: true });
if (!existsSync(join(tree, '.ready'))) {
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(join(tree, 'bin'), { recursive: true });
  sh('sh', ['-c', `cd / && tar -cf - ${DIRS.filter((d) => existsSync(`/${d}`)).join(' ')} | tar -C "${tree}" -xf -`]);
  copyFileSync('/bin/busybox', join(tree, 'bin/busybox'));
  for (const t of ['sh', 'find', 'xargs', 'cat', 'wc', 'cut', 'echo', 'true']) symlinkSync('busybox', join(tree, 'bin', t));
  for (const d of ['proc', 'sys', 'dev', 'run', 'tmp', 'etc']) mkdirSync(join(tree, d), { recursive: true });
  writeFileSync(join(tree, '.ready'), '');
}
const treeBytes = Number(sh('du', ['-sb', tree]).split('\t')[0]);
const treeFiles = Number(sh('sh', ['-c', `find "${tree}" | wc -l`]).trim());

const VARIANTS = {
  erofs: { fstype: 'erofs', build: (img) => ['mkfs.erofs', ['--quiet', img, tree]] },
  'erofs-lz4': { fstype: 'erofs', build: (img) => ['mkfs.erofs', ['--quiet', '-zlz4', img, tree]] },
  // No journal: the image is never written (mounted with noload anyway); sized 1.5x + 64 MiB, sparse.
  ext4: {
    fstype: 'ext4',
    build: (img) => {
      writeFileSync(img, '');
      spawnSync('truncate', ['-s', String(Math.ceil((treeBytes * 1.5) / 4096) * 4096 + (64 << 20)), img]);
      return ['mkfs.ext4', ['-q', '-F', '-d', tree, '-m', '0', '-O', '^has_journal', '-E', 'lazy_itable_init=1', img]];
    },
  },
};

const fs = freshFsFactory(out);
const results = Object.fromEntries(Object.keys(VARIANTS).map((k) => [k, { wall: [], cpu: [], size: 0, blocks: 0, read: [], readBytes: 0, boot: [], exec: [] }]));
const images = {};
// Build: interleaved, each variant into a fresh ext4; the last build of each is kept for the boots.
for (let r = 0; r < runs; r++) {
  for (const [name, v] of Object.entries(VARIANTS)) {
    const dir = fs.fresh();
    const img = join(dir, `${name}.img`);
    const [cmd, args] = v.build(img);
    const t = spawnSync('/usr/bin/time', ['-f', '%e %U %S', cmd, ...args], { encoding: 'utf8' });
    if (t.status !== 0) throw new Error(`${cmd} failed: ${t.stderr}`);
    const [e, u, s] = t.stderr.trim().split('\n').at(-1).split(' ').map(Number);
    results[name].wall.push(e * 1000);
    results[name].cpu.push((u + s) * 1000);
    const st = statSync(img);
    results[name].size = st.size;
    results[name].blocks = st.blocks * 512;
    if (r === runs - 1) {
      images[name] = join(out, `${name}.img`);
      copyFileSync(img, images[name]);
    }
  }
}
fs.drop();

// Boots: the engine's kernel, initramfs and guest init; QEMU as root (no setpriv: not what is measured).
const backend = new QemuBackend({ home: new MonocoreHome(join(out, 'home')) });
const { kernel, initramfs } = await backend.prepare();
const tscKhz = hostTscKhz(readFileSync('/proc/cpuinfo', 'utf8'));

async function boot(image, fstype, argv) {
  const run = mkdtempSync(join(tmpdir(), 'mcbr-'));
  const upper = join(run, 'upper.ext4');
  writeFileSync(upper, '');
  spawnSync('truncate', ['-s', '1G', upper]);
  sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', upper]);
  const socks = {};
  const servers = [];
  for (const n of ['console', 'control', 'stdout', 'stderr']) {
    const srv = createServer();
    servers.push(srv);
    socks[n] = { path: join(run, `${n}.sock`), conn: new Promise((r) => srv.once('connection', r)) };
    await new Promise((r) => srv.listen(socks[n].path, r));
  }
  const fds = [openSync(image, 'r'), openSync(upper, 'r'), openSync(upper, 'r+')];
  const args = qemuArgs({
    accel: 'tcg', cpus: 1, ramMib: 256, kernel: kernel.vmlinux, initrd: initramfs.path, tscKhz,
    consoleSocket: socks.console.path,
    image: { fds: [3], path: image }, disk: { fds: [4, 5], path: upper },
    serialPorts: [['ctl', 'monocore.control', 'control'], ['out', 'monocore.stdout', 'stdout'], ['err', 'monocore.stderr', 'stderr']].map(([id, name, s]) => ({ id, name, socket: socks[s].path })),
    volumes: [], nics: [],
  });
  const spec = encodeGuestSpec({ argv, env: ['PATH=/bin'], workdir: '/', hostname: 'bench', disk: true, image: fstype, volumes: [], nics: [], hosts: [] });
  const t0 = performance.now();
  const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe', ...fds] });
  for (const fd of fds) closeSync(fd);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  (await socks.console.conn).resume();
  (await socks.stderr.conn).resume();
  const stdout = [];
  (await socks.stdout.conn).on('data', (d) => stdout.push(d));
  const ctl = await socks.control.conn;
  let lines = '';
  const events = {};
  ctl.on('data', (d) => {
    lines += d;
    for (const l of lines.split('\n').slice(0, -1)) { const [w, ...rest] = l.split(' '); events[w] = rest; }
    lines = lines.slice(lines.lastIndexOf('\n') + 1);
  });
  ctl.write(spec);
  await new Promise((r) => child.once('exit', r));
  const ms = performance.now() - t0;
  for (const s of servers) s.close();
  rmSync(run, { recursive: true, force: true });
  if (!events.exit || events.exit[0] !== '0') throw new Error(`boot failed (${JSON.stringify(events)}): ${stderr}`);
  return { ms, startedUptime: Number(events.started?.[0]), stdout: Buffer.concat(stdout).toString() };
}

const READ = ['/bin/sh', '-c', 'a=$(cut -d" " -f1 /proc/uptime); n=$(find /usr -type f | xargs cat | wc -c); b=$(cut -d" " -f1 /proc/uptime); echo "$a $b $n"'];
for (let i = 0; i < boots; i++) {
  for (const [name, v] of Object.entries(VARIANTS)) {
    const t = await boot(images[name], v.fstype, ['/bin/true']);
    results[name].boot.push(t.ms);
    results[name].exec.push(t.startedUptime * 1000);
    const r = await boot(images[name], v.fstype, READ);
    const [a, b, n] = r.stdout.trim().split(' ').map(Number);
    results[name].read.push((b - a) * 1000);
    results[name].readBytes = n;
  }
  console.error(`boot round ${i + 1}/${boots} done`);
}

const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const mb = (n) => `${(n / 1e6).toFixed(0)} MB`;
console.log(`
| variant (${new Date().toISOString().slice(0, 16)}Z; tree ${mb(treeBytes)}, ${treeFiles} entries; build median of ${runs}, boots median of ${boots}; load ${load}) | build wall | build CPU | image size (allocated) | guest: read all of /usr | guest: boot \`true\` (wall) | guest uptime at exec |
|---|---|---|---|---|---|---|
${Object.entries(results).map(([n, r]) => `| ${n} | ${fmt(median(r.wall))} | ${fmt(median(r.cpu))} | ${mb(r.size)} (${mb(r.blocks)}) | ${fmt(median(r.read))} (${mb(r.readBytes)}; runs ${r.read.map(fmt).join(', ')}) | ${fmt(median(r.boot))} | ${fmt(median(r.exec))} |`).join('\n')}
`);
