#!/usr/bin/env node
// Benchmark (issue 11): cold pull + unpack + block image of a ~200 MB, 4-layer image from the
// loopback test registry, against the near-limit of plain tools: fetch the manifest, then every
// layer blob at once through `curl -s URL | tar xz -C DIR_i` into its own fresh directory (no
// digest check, no whiteouts, no blob kept, no block image). Goal: monocore ≤ 1.3× that.
//
//   npm run bench -- cold-pull [rounds=5]
//   (or: npx tsc -b && . .monocore-test/env.sh && node bench/cold-pull.mjs [rounds=5])
//
// The image is built once from host files with GNU tar + `umoci raw add-layer` (gzip by umoci;
// as bench/oci-pull.mjs does), cached in $MONOCORE_TEST_STATE_DIR/bench/cold-pull/, and pushed
// with skopeo to the test registry as bench/cold-pull:v1 on every start (a no-op when present).
// Layers, largest first: python3.11 stdlib + perl; python3 dist-packages; some locales + man
// sections 3/5/7/8; i18n + zoneinfo. No whiteouts, so both variants produce the same files.
//
// Each round runs both variants, the order alternating between rounds, each on a freshly made
// ext4 filesystem (8 GiB sparse loop file, `mkfs.ext4 -E lazy_itable_init=0`; as root;
// bench/support/fresh-fs.mjs): ext4 allocates inodes slowly for minutes after a large delete, so
// no variant may run where another one deleted. Making, flushing and unmounting the filesystems
// is not timed; each variant starts with nothing dirty.
//   monocore   `monocore pull --json REF` with MONOCORE_HOME on the fresh filesystem: wall time of
//              the CLI process (Node start-up included). It downloads (sha256 while streaming,
//              blobs kept), unpacks (overlapping the downloads) and builds the erofs block image;
//              its flush to disk is a detached `sync -f` after the commit, as in production.
//              Breakdown from its progress lines on stderr (time they arrive here): start-up +
//              manifest (spawn → `downloading`), downloads (→ `unpacking`, held back until the last
//              blob is committed), rest of the unpack (→ `building`, or → exit when the unpack
//              wrote the block image itself and no `building` phase comes), block image (→ exit);
//              and from the pull result: unpackSeconds (applying layers, waits for blobs
//              excluded), blockSeconds (mkfs.erofs, or the erofs writer's finish: walk +
//              metadata), elapsedMs (inside the process).
//   baseline   one bash process: curl the manifest (jq picks the layer digests), then for each
//              layer `curl -fsS …/blobs/DIGEST | tar xz -C DIR_i` in the background, wait for all:
//              wall time of the bash process.
// Both also report CPU time (user + sys of everything they ran, from bash's `times`): on 2 cores
// both are CPU-bound, so the ratio of CPU says how much of the gap is work the baseline skips.
// After each variant (untimed) the entries it produced are counted, so a variant that silently
// extracted nothing cannot win.
//
// Output: JSON lines on stdout (`image`, one `round` per variant and round, `summary`); progress
// and a Markdown table for bench/RESULTS.md on stderr.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshFsFactory } from './support/fresh-fs.mjs';

const rounds = Number(process.argv[2] ?? 5);
const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const cli = join(root, 'apps', 'cli', 'dist', 'main.js');
const registry = process.env.MONOCORE_TEST_REGISTRY;
const stateDir = process.env.MONOCORE_TEST_STATE_DIR;
if (!registry || !stateDir) {
  console.error('MONOCORE_TEST_REGISTRY / MONOCORE_TEST_STATE_DIR are not set: run `npm run bench -- cold-pull` (or `bash scripts/test-services.sh start && . .monocore-test/env.sh`)');
  process.exit(2);
}
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(`rounds must be a positive integer, got ${process.argv[2]}`);
  process.exit(2);
}
const REPO = 'bench/cold-pull';
const TAG = 'v1';
const REF = `${registry}/${REPO}:${TAG}`;
const cache = join(stateDir, 'bench', 'cold-pull');
const out = join(here, 'out', 'cold-pull');
// Bump when the layer list changes, so the cached image is rebuilt.
const IMAGE_VERSION = '1';
const LAYERS = [
  ['usr/lib/python3.11', 'usr/share/perl', 'usr/lib/x86_64-linux-gnu/perl', 'usr/lib/x86_64-linux-gnu/perl-base'],
  ['usr/lib/python3/dist-packages'],
  ['usr/share/locale/de', 'usr/share/locale/fr', 'usr/share/locale/es', 'usr/share/locale/ja', 'usr/share/man/man3', 'usr/share/man/man5', 'usr/share/man/man7', 'usr/share/man/man8'],
  ['usr/share/i18n', 'usr/share/zoneinfo'],
];

const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20, ...opts }).toString();
const emit = (o) => process.stdout.write(`${JSON.stringify({ bench: 'cold-pull', ...o })}\n`);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sec = (ms) => `${(ms / 1000).toFixed(2)} s`;
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const entries = (dir) => Number(sh('sh', ['-c', 'find "$1" -mindepth 1 | wc -l', 'sh', dir]).trim());

function prepare() {
  mkdirSync(cache, { recursive: true });
  const layout = join(cache, 'layout');
  const ready = join(cache, 'ready');
  if (!existsSync(ready) || readFileSync(ready, 'utf8') !== IMAGE_VERSION) {
    console.error(`building the benchmark image (${LAYERS.length} layers from host files) in ${cache}…`);
    rmSync(layout, { recursive: true, force: true });
    sh('umoci', ['init', '--layout', layout]);
    sh('umoci', ['new', '--image', `${layout}:${TAG}`]);
    LAYERS.forEach((dirs, i) => {
      const present = dirs.filter((d) => existsSync(`/${d}`));
      if (present.length === 0) throw new Error(`layer ${i}: none of ${dirs.join(', ')} exists on this host`);
      const tar = join(cache, `layer${i}.tar`);
      sh('tar', ['-C', '/', '--sort=name', '-cf', tar, ...present]);
      sh('umoci', ['raw', 'add-layer', '--image', `${layout}:${TAG}`, tar]);
      rmSync(tar);
    });
    sh('umoci', ['config', '--image', `${layout}:${TAG}`, '--os', 'linux', '--architecture', 'amd64', '--config.cmd', '/bin/sh']);
    writeFileSync(ready, IMAGE_VERSION);
  }
  sh('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:${TAG}`, `docker://${REF}`]);
  const manifest = JSON.parse(sh('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${REF}`]));
  // Unpacked size and entry count from the layer tars themselves (the host may have changed since).
  let unpacked = 0;
  let files = 0;
  for (const l of manifest.layers) {
    const blob = join(layout, 'blobs', ...l.digest.split(':'));
    const listing = sh('sh', ['-c', 'tar -tvzf "$1"', 'sh', blob]).split('\n').filter(Boolean);
    files += listing.length;
    for (const line of listing) unpacked += Number(line.split(/\s+/)[2]) || 0;
  }
  return { layers: manifest.layers.map((l) => l.size), compressed: manifest.layers.reduce((a, l) => a + l.size, 0), unpacked, entries: files };
}

// Runs "$@" under bash and prints bash's `times` on fd 3: its second line is the CPU (user, sys)
// of every process it waited for, grandchildren included (each reaped child's rusage carries the
// children it reaped): the CLI with its threads, or the baseline's curls and tars.
const WITH_CPU = '"$@"; s=$?; times >&3; exit $s';
const cpuSeconds = (times) => {
  const line = times.trim().split('\n').at(-1) ?? '';
  const parts = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  if (parts.length !== 2) throw new Error(`cannot read bash's times: ${JSON.stringify(times)}`);
  return parts[0] + parts[1];
};

/** Spawns and times a process (wall and CPU); calls onLine(ms since spawn, line) for each stderr line. */
function timed(cmd, args, { env = {}, onLine } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('bash', ['-c', WITH_CPU, 'timed', cmd, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let times = '';
    let partial = '';
    child.stdio[3].on('data', (d) => (times += d));
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      const at = performance.now() - t0;
      stderr += d;
      const lines = (partial + d).split('\n');
      partial = lines.pop();
      for (const l of lines) onLine?.(at, l);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${stderr.slice(-2000)}`));
      else resolve({ ms, stdout, cpuS: cpuSeconds(times) });
    });
  });
}

async function monocore(dir) {
  const phases = {};
  const r = await timed(process.execPath, [cli, 'pull', '--json', REF], {
    env: { MONOCORE_HOME: join(dir, 'home') },
    onLine: (at, line) => {
      const m = /: (downloading|unpacking|building)\b/.exec(line);
      if (m) phases[m[1]] ??= at;
    },
  });
  const res = JSON.parse(r.stdout.trim().split('\n').at(-1));
  if (res.cache !== 'cold') throw new Error(`expected a cold pull, got ${res.cache}`);
  if (res.blockSeconds === undefined) throw new Error('the pull built no block image (is mkfs.erofs installed?)');
  const { downloading, unpacking } = phases;
  if (downloading === undefined || unpacking === undefined) throw new Error(`progress phases missing: ${JSON.stringify(phases)}`);
  // The unpack writes the block image as it goes (no `building` phase): its finish is part of the unpack tail.
  const building = phases.building ?? r.ms;
  return {
    ms: r.ms,
    cpuS: r.cpuS,
    startMs: downloading,
    downloadMs: unpacking - downloading,
    unpackTailMs: building - unpacking,
    blockWallMs: r.ms - building,
    unpackSeconds: res.unpackSeconds,
    blockSeconds: res.blockSeconds,
    elapsedMs: res.elapsedMs,
    entries: entries(res.rootfs),
  };
}

// The baseline in one bash process: manifest, then all layers at once, each pipeline checked.
const BASELINE = `
set -euo pipefail
base="http://$1/v2/$2"; tag="$3"; dir="$4"
digests="$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "$base/manifests/$tag" | jq -r '.layers[].digest')"
pids=(); i=0
for d in $digests; do
  mkdir -p "$dir/$i"
  ( curl -fsS "$base/blobs/$d" | tar xz -C "$dir/$i" ) &
  pids+=($!); i=$((i + 1))
done
for p in "\${pids[@]}"; do wait "$p"; done
`;

async function baseline(dir) {
  const target = join(dir, 'layers');
  const r = await timed('bash', ['-c', BASELINE, 'baseline', registry, REPO, TAG, target]);
  return { ms: r.ms, cpuS: r.cpuS, entries: entries(target) };
}

const info = prepare();
emit({ kind: 'image', ref: REF, layersCompressed: info.layers, compressed: info.compressed, unpacked: info.unpacked, entries: info.entries });
console.error(`image ${REF}: ${info.layers.length} layers (${info.layers.map((b) => (b / 1e6).toFixed(1)).join(' + ')} MB gzip = ${(info.compressed / 1e6).toFixed(1)} MB), ${(info.unpacked / 1e6).toFixed(0)} MB unpacked, ${info.entries} tar entries`);

const fs = freshFsFactory(out);
if (!fs.canMount && !process.env.BENCH_SHARED_DIR) {
  console.error('cannot make fresh ext4 filesystems here (needs root and loop devices); BENCH_SHARED_DIR=1 runs in one shared directory, which the goal does not allow');
  process.exit(2);
}
const startLoad = loadavg();
const res = { monocore: [], baseline: [] };
try {
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? ['monocore', 'baseline'] : ['baseline', 'monocore'];
    for (const v of order) {
      const dir = fs.fresh();
      const load = loadavg();
      const m = v === 'monocore' ? await monocore(dir) : await baseline(dir);
      res[v].push(m);
      emit({ kind: 'round', round: i + 1, variant: v, load, ...m });
    }
    const [a, b] = [res.monocore.at(-1), res.baseline.at(-1)];
    console.error(
      `round ${i + 1}/${rounds} (${order.join(' first, ')}): monocore ${sec(a.ms)} (start ${sec(a.startMs)}, downloads ${sec(a.downloadMs)}, unpack tail ${sec(a.unpackTailMs)}, block ${sec(a.blockWallMs)}; ` +
        `unpackSeconds ${a.unpackSeconds.toFixed(2)}, blockSeconds ${a.blockSeconds.toFixed(2)}; CPU ${a.cpuS.toFixed(2)} s), curl|tar ${sec(b.ms)} (CPU ${b.cpuS.toFixed(2)} s), ratio ${(a.ms / b.ms).toFixed(2)}; entries ${a.entries} / ${b.entries}`,
    );
  }
} finally {
  fs.drop();
}

const med = (v, k) => median(res[v].map((r) => r[k]));
const summary = {
  rounds,
  loadStart: startLoad,
  loadEnd: loadavg(),
  monocoreMs: med('monocore', 'ms'),
  baselineMs: med('baseline', 'ms'),
  monocoreCpuS: med('monocore', 'cpuS'),
  baselineCpuS: med('baseline', 'cpuS'),
  ratio: med('monocore', 'ms') / med('baseline', 'ms'),
  goal: 1.3,
  monocore: Object.fromEntries(['startMs', 'downloadMs', 'unpackTailMs', 'blockWallMs', 'unpackSeconds', 'blockSeconds', 'elapsedMs'].map((k) => [k, med('monocore', k)])),
};
summary.met = summary.ratio <= summary.goal;
emit({ kind: 'summary', ...summary });

const runs = (v) => res[v].map((r) => sec(r.ms)).join(', ');
console.error(`
| measure (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${info.layers.length} layers, ${(info.compressed / 1e6).toFixed(1)} MB gzip, ${(info.unpacked / 1e6).toFixed(0)} MB unpacked; median of ${rounds}; load ${startLoad} → ${summary.loadEnd}) | result |
|---|---|
| monocore \`pull\` (CLI wall: download + unpack + erofs) | ${sec(summary.monocoreMs)} (runs: ${runs('monocore')}) |
| of which: start-up + manifest / downloads / unpack after them / block image | ${sec(summary.monocore.startMs)} / ${sec(summary.monocore.downloadMs)} / ${sec(summary.monocore.unpackTailMs)} / ${sec(summary.monocore.blockWallMs)} |
| pull result: unpackSeconds / blockSeconds / elapsedMs (in-process) | ${summary.monocore.unpackSeconds.toFixed(2)} s / ${summary.monocore.blockSeconds.toFixed(2)} s / ${sec(summary.monocore.elapsedMs)} |
| baseline: manifest + all layers \`curl \\| tar xz\` in parallel | ${sec(summary.baselineMs)} (runs: ${runs('baseline')}) |
| CPU (user + sys, all processes) monocore / baseline | ${summary.monocoreCpuS.toFixed(2)} s / ${summary.baselineCpuS.toFixed(2)} s (${(summary.monocoreCpuS / summary.baselineCpuS).toFixed(2)}×; 2 cores) |
| **ratio monocore / baseline** | **${summary.ratio.toFixed(2)} — goal ≤ ${summary.goal} ${summary.met ? 'met' : 'not met'}** |
`);
