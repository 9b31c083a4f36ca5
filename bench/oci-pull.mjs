#!/usr/bin/env node
// Benchmark: cold pull + unpack of a ~210 MB, 5-layer image from the loopback test
// registry, monocore vs `skopeo copy` to an OCI layout + `umoci unpack`; and the
// warm pull of an image already present.
//
//   npx tsc -b && . .monocore-test/env.sh && node bench/oci-pull.mjs [runs=3]
//
// The image is built once from host files (python3.11 stdlib, perl, mesa dri +
// qemu firmware, python3 dist-packages + gconv, i18n + zoneinfo) with GNU tar +
// `umoci raw add-layer` (gzip by umoci), cached in bench/out/oci-pull/, and pushed
// with skopeo. Variants run interleaved, each into its own freshly made ext4
// filesystem (a loop mount; as root) so none pays for another's deletions:
//   monocore (cli)      `monocore pull -q REF` in a fresh MONOCORE_HOME, wall time of the process
//   monocore (library)  `pullImage()` in a fresh process, timed inside (Node + module load excluded)
//   skopeo+umoci        `skopeo copy docker://REF oci:DIR` then `umoci unpack`, wall time of both
// Warm pulls: the library call in a fresh process (first call, then a second one) with every
// HTTP request recorded through undici's diagnostics channel, and the CLI's wall time.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshFsFactory } from './support/fresh-fs.mjs';

const runs = Number(process.argv[2] ?? 3);
const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const out = join(here, 'out', 'oci-pull');
const cli = join(root, 'apps', 'cli', 'dist', 'main.js');
const registry = process.env.MONOCORE_TEST_REGISTRY;
if (!registry) {
  console.error('MONOCORE_TEST_REGISTRY is not set: run `bash scripts/test-services.sh start && . .monocore-test/env.sh` first');
  process.exit(2);
}
const REF = `${registry}/bench/oci-pull:v1`;
const LAYERS = [
  ['usr/lib/python3.11'],
  ['usr/share/perl', 'usr/lib/x86_64-linux-gnu/perl'],
  ['usr/lib/x86_64-linux-gnu/dri', 'usr/share/qemu'],
  ['usr/lib/python3/dist-packages', 'usr/lib/x86_64-linux-gnu/gconv'],
  ['usr/share/i18n', 'usr/share/zoneinfo'],
];

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20, ...opts }).toString();
}

function prepare() {
  mkdirSync(out, { recursive: true });
  const layout = join(out, 'layout');
  if (!existsSync(join(out, 'ready'))) {
    console.error('building the benchmark image (5 layers from host files)…');
    rmSync(layout, { recursive: true, force: true });
    sh('umoci', ['init', '--layout', layout]);
    sh('umoci', ['new', '--image', `${layout}:v1`]);
    LAYERS.forEach((dirs, i) => {
      const tar = join(out, `layer${i}.tar`);
      sh('tar', ['-C', '/', '--sort=name', '-cf', tar, ...dirs.filter((d) => existsSync(`/${d}`))]);
      sh('umoci', ['raw', 'add-layer', '--image', `${layout}:v1`, tar]);
      rmSync(tar);
    });
    sh('umoci', ['config', '--image', `${layout}:v1`, '--os', 'linux', '--architecture', 'amd64', '--config.cmd', '/bin/sh']);
    writeFileSync(join(out, 'ready'), '');
  }
  sh('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${REF}`]);
  const manifest = JSON.parse(sh('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${REF}`]));
  const compressed = manifest.layers.reduce((a, l) => a + l.size, 0);
  const unpacked = Number(sh('du', ['-sb', ...LAYERS.flat().map((d) => `/${d}`).filter(existsSync)]).split('\n').filter(Boolean).reduce((a, l) => a + Number(l.split('\t')[0]), 0));
  return { layers: manifest.layers.length, compressed, unpacked };
}

function timed(cmd, args, env = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return { ms, stdout: r.stdout.toString() };
}

// Runs pullImage in a fresh Node process; prints {ms, requests} per call.
const LIB_SCRIPT = `
import { subscribe } from 'node:diagnostics_channel';
import { MonocoreHome, pullImage, closeDefaultRegistryClient } from '@monocore/engine';
const requests = [];
subscribe('undici:request:create', ({ request }) => requests.push(request.method + ' ' + request.path));
const calls = Number(process.argv.at(-1));
const res = [];
for (let i = 0; i < calls; i++) {
  requests.length = 0;
  const t0 = performance.now();
  let downloadedAt;
  await pullImage(process.env.REF, { home: new MonocoreHome(), onProgress: (p) => { if (p.phase === 'unpacking') downloadedAt ??= performance.now(); } });
  const t1 = performance.now();
  res.push({ ms: t1 - t0, downloadMs: downloadedAt === undefined ? 0 : downloadedAt - t0, requests: [...requests] });
}
await closeDefaultRegistryClient();
console.log(JSON.stringify(res));
`;

function lib(home, calls = 1) {
  const r = timed(process.execPath, ['--input-type=module', '-e', LIB_SCRIPT, String(calls)], { MONOCORE_HOME: home, REF });
  return JSON.parse(r.stdout);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);

const info = prepare();

// Each variant writes into its own freshly made ext4 filesystem (bench/support/fresh-fs.mjs).
const fs = freshFsFactory(out);
const canMount = fs.canMount;
const freshFs = () => fs.fresh();
const dropFs = () => fs.drop();

const results = { cli: [], lib: [], libDownload: [], base: [], skopeo: [], umoci: [] };
for (let i = 0; i < runs; i++) {
  results.cli.push(timed(process.execPath, [cli, 'pull', '-q', REF], { MONOCORE_HOME: join(freshFs(), 'home-cli') }).ms);
  const [l] = lib(join(freshFs(), 'home-lib'));
  results.lib.push(l.ms);
  results.libDownload.push(l.downloadMs);
  const work = freshFs();
  const a = timed('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${REF}`, `oci:${join(work, 'oci')}:v1`]).ms;
  const b = timed('umoci', ['unpack', '--image', `${join(work, 'oci')}:v1`, join(work, 'bundle')]).ms;
  results.skopeo.push(a);
  results.umoci.push(b);
  results.base.push(a + b);
  console.error(`run ${i + 1}/${runs}: cli ${fmt(results.cli.at(-1))}, library ${fmt(results.lib.at(-1))} (download+verify ${fmt(results.libDownload.at(-1))}), skopeo+umoci ${fmt(a + b)} (${fmt(a)} + ${fmt(b)})`);
}
// Warm: a home that already holds the image.
const warmHome = join(freshFs(), 'home-warm');
lib(warmHome);
const warmLib = [];
const warmLib2 = [];
let warmRequests = [];
for (let i = 0; i < 10; i++) {
  const [first, second] = lib(warmHome, 2);
  warmLib.push(first.ms);
  warmLib2.push(second.ms);
  warmRequests = [...new Set([...warmRequests, ...first.requests, ...second.requests])];
}
const warmCli = [];
for (let i = 0; i < 5; i++) warmCli.push(timed(process.execPath, [cli, 'pull', '-q', REF], { MONOCORE_HOME: warmHome }).ms);
const nodeStart = [];
for (let i = 0; i < 5; i++) nodeStart.push(timed(process.execPath, [cli, '--version']).ms);
dropFs();

const load = sh('cat', ['/proc/loadavg']).split(' ').slice(0, 3).join(' ');
console.log(`
| measure (${new Date().toISOString().slice(0, 10)}, ${canMount ? 'a fresh ext4 per variant' : 'one shared directory'}, ${info.layers} layers, ${(info.compressed / 1e6).toFixed(1)} MB gzip, ${(info.unpacked / 1e6).toFixed(0)} MB unpacked; median of ${runs}; load ${load}) | result |
|---|---|
| cold: \`monocore pull\` (CLI process, wall) | ${fmt(median(results.cli))} (runs: ${results.cli.map(fmt).join(', ')}) |
| cold: \`pullImage()\` (library, in a fresh process) | ${fmt(median(results.lib))} (runs: ${results.lib.map(fmt).join(', ')}); of which download + verify ${fmt(median(results.libDownload))}, unpack ${fmt(median(results.lib.map((x, i) => x - results.libDownload[i])))} |
| cold: \`skopeo copy\` + \`umoci unpack\` | ${fmt(median(results.base))} (skopeo ${fmt(median(results.skopeo))} + umoci ${fmt(median(results.umoci))}) |
| ratio monocore CLI / skopeo+umoci | ${(median(results.cli) / median(results.base)).toFixed(2)} |
| ratio monocore library / skopeo+umoci | ${(median(results.lib) / median(results.base)).toFixed(2)} |
| warm: \`pullImage()\`, first call in a process (median of 10) | ${fmt(median(warmLib))} (min ${fmt(Math.min(...warmLib))}) |
| warm: \`pullImage()\`, second call in the process (median of 10) | ${fmt(median(warmLib2))} (min ${fmt(Math.min(...warmLib2))}) |
| warm: HTTP requests made | ${warmRequests.map((r) => `\`${r}\``).join(', ')} |
| warm: \`monocore pull\` CLI wall (median of 5) | ${fmt(median(warmCli))}; \`monocore --version\` alone: ${fmt(median(nodeStart))} |
`);
