#!/usr/bin/env node
// Benchmark: unpacking one ~200 MB layer into a rootfs, monocore vs umoci vs GNU tar.
//
//   npx tsc -b && node bench/rootfs-unpack.mjs [runs=5]
//
// The layer is a tar of real host files (python3.11 stdlib, perl, gcc, i18n,
// zoneinfo, qemu firmware: many small files and some big binaries), cached in
// bench/out/rootfs-unpack/ with gzip (-6, like Docker) and zstd (-3) copies and an
// OCI layout for umoci. Variants run interleaved, page cache warm, each into a
// freshly made ext4 filesystem (bench/support/fresh-fs.mjs; deletion not timed). monocore is timed in-process
// (ensureImageRootfs, as the puller calls it; Node startup excluded), umoci and tar
// as commands (Go/C startup is a few ms).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshFsFactory } from './support/fresh-fs.mjs';
import { sha256File } from './support/sha256-file.mjs';
import { ensureImageRootfs, MonocoreHome } from '@monocore/engine';

const runs = Number(process.argv[2] ?? 5);
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'out', 'rootfs-unpack');
const SOURCES = ['usr/lib/python3.11', 'usr/share/perl', 'usr/lib/x86_64-linux-gnu/perl', 'usr/share/zoneinfo', 'usr/share/i18n', 'usr/share/qemu', 'usr/lib/gcc'];

async function prepare() {
  mkdirSync(out, { recursive: true });
  const tar = join(out, 'layer.tar');
  if (!existsSync(join(out, 'ready'))) {
    console.error('building the fixture layer…');
    execFileSync('tar', ['-C', '/', '--sort=name', '-cf', tar, ...SOURCES.filter((s) => existsSync('/' + s))]);
    execFileSync('sh', ['-c', `gzip -n -6 -c '${tar}' > '${tar}.gz' && zstd -q -f -3 '${tar}' -o '${tar}.zst'`]);
    // OCI layout for umoci (gzip layer).
    const layout = join(out, 'layout');
    rmSync(layout, { recursive: true, force: true });
    mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
    const layerHex = await sha256File(`${tar}.gz`);
    const diffHex = await sha256File(tar);
    execFileSync('cp', [`${tar}.gz`, join(layout, 'blobs', 'sha256', layerHex)]);
    const blob = (obj) => {
      const data = Buffer.from(JSON.stringify(obj));
      const hex = createHash('sha256').update(data).digest('hex');
      writeFileSync(join(layout, 'blobs', 'sha256', hex), data);
      return { digest: `sha256:${hex}`, size: data.length };
    };
    const config = blob({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${diffHex}`] } });
    const manifest = blob({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${layerHex}`, size: statSync(`${tar}.gz`).size }],
    });
    writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    writeFileSync(join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'bench' } }],
    }));
    writeFileSync(join(out, 'meta.json'), JSON.stringify({ layerHex, manifestDigest: manifest.digest }));
    writeFileSync(join(out, 'ready'), '');
  }
  return JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8'));
}

const meta = await prepare();
const tar = join(out, 'layer.tar');
const sizes = { tar: statSync(tar).size, gz: statSync(`${tar}.gz`).size, zst: statSync(`${tar}.zst`).size };
const files = Number(execFileSync('sh', ['-c', `tar -tf '${tar}' | wc -l`], { encoding: 'utf8' }).trim());

const layer = (kind) => {
  const path = kind === 'gzip' ? `${tar}.gz` : kind === 'zstd' ? `${tar}.zst` : tar;
  const mediaType = `application/vnd.oci.image.layer.v1.tar${kind === 'gzip' ? '+gzip' : kind === 'zstd' ? '+zstd' : ''}`;
  return { digest: `sha256:${meta.layerHex}`, mediaType, size: statSync(path).size, path };
};

// Each variant unpacks into its own freshly made ext4 (bench/support/fresh-fs.mjs).
const fs = freshFsFactory(out);
let work = join(out, 'work');
// Commands run under /usr/bin/time so their CPU time (user+sys) is known: on a
// loaded machine CPU seconds are steadier than wall time.
let childCpu = 0;
function timed(cmd, args, opts) {
  const r = spawnSync('/usr/bin/time', ['-f', 'CPU %U %S', cmd, ...args], { ...opts, stdio: ['ignore', 'ignore', 'pipe'] });
  const m = /CPU ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr.toString());
  if (m) childCpu = (Number(m[1]) + Number(m[2])) * 1000;
  return r;
}
const variants = {
  'monocore gzip': async () => {
    const home = new MonocoreHome(join(work, 'home'));
    await ensureImageRootfs({ home, imageId: meta.manifestDigest, layers: [layer('gzip')] });
  },
  'monocore zstd': async () => {
    const home = new MonocoreHome(join(work, 'home'));
    await ensureImageRootfs({ home, imageId: meta.manifestDigest, layers: [layer('zstd')] });
  },
  'monocore plain tar': async () => {
    const home = new MonocoreHome(join(work, 'home'));
    await ensureImageRootfs({ home, imageId: meta.manifestDigest, layers: [layer('none')] });
  },
  'umoci unpack (gzip)': async () => {
    const r = timed('umoci', ['unpack', '--image', `${join(out, 'layout')}:bench`, join(work, 'bundle')], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) throw new Error(r.stderr.toString());
  },
  'GNU tar -xzf': async () => {
    mkdirSync(join(work, 'x'), { recursive: true });
    const r = timed('tar', ['-xzf', `${tar}.gz`, '-C', join(work, 'x'), '--same-owner', '-p'], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) throw new Error(r.stderr.toString());
  },
};

const times = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
const cpu = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (let i = 0; i < runs; i++) {
  for (const [name, fn] of Object.entries(variants)) {
    work = join(fs.fresh(), 'work');
    mkdirSync(work, { recursive: true });
    spawnSync('sync');
    childCpu = 0;
    const c0 = process.cpuUsage();
    const t = process.hrtime.bigint();
    await fn();
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    const c = process.cpuUsage(c0);
    // In-process variants: this process's CPU (all its threads); commands: theirs.
    const cpuMs = name.startsWith('monocore') ? (c.user + c.system) / 1000 : childCpu;
    times[name].push(ms);
    cpu[name].push(cpuMs);
    console.error(`run ${i + 1}/${runs} ${name}: ${ms.toFixed(0)} ms wall, ${cpuMs.toFixed(0)} ms CPU`);
  }
}
fs.drop();

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
console.log(`${fs.canMount ? 'a fresh ext4 per variant' : 'one shared directory'}; layer: ${(sizes.tar / 1e6).toFixed(0)} MB tar, ${files} entries; gzip ${(sizes.gz / 1e6).toFixed(0)} MB, zstd ${(sizes.zst / 1e6).toFixed(0)} MB; ${runs} runs; load average at end ${load}`);
console.log('| variant | wall median ms | wall min–max ms | CPU median ms (user+sys) | MB/s (tar bytes, wall median) |');
console.log('|---|---|---|---|---|');
for (const [name, a] of Object.entries(times)) {
  const m = median(a);
  console.log(`| ${name} | ${m.toFixed(0)} | ${Math.min(...a).toFixed(0)}–${Math.max(...a).toFixed(0)} | ${median(cpu[name]).toFixed(0)} | ${(sizes.tar / 1e6 / (m / 1000)).toFixed(0)} |`);
}
const um = median(times['umoci unpack (gzip)']);
console.log(`\nratio of medians, monocore gzip / umoci unpack: wall ${(median(times['monocore gzip']) / um).toFixed(2)}, CPU ${(median(cpu['monocore gzip']) / median(cpu['umoci unpack (gzip)'])).toFixed(2)}`);
console.log('(monocore zstd CPU excludes the zstd child process)');
