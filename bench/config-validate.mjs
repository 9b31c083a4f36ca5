// Cost of parsing + validating + planning monocore.toml at the schema's limit
// (1024 services), and of rejecting a file with many problems.
// Usage: npx tsc -b && node bench/config-validate.mjs [iterations]
import { performance } from 'node:perf_hooks';
import { checkConfigToml, parseConfigToml, planServices } from '@monocore/engine';

const iterations = Number(process.argv[2] ?? 20);
const n = 1024;
let toml = '[[group]]\nname = "g"\n[[group.volume]]\nname = "v"\npath = "/srv/v"\n[[group.env]]\nname = "e"\nenvs = ["A=1"]\n';
for (let i = 0; i < n; i++) {
  // 32 layers of 32 services; each depends on two services of the layer below,
  // so the longest chain is exactly the limit of 32.
  const layer = Math.floor(i / 32);
  const deps = layer === 0 ? [] : [`s${(layer - 1) * 32 + (i % 32)}`, `s${(layer - 1) * 32 + ((i + 7) % 32)}`];
  toml += `[[service]]\nname = "s${i}"\nbase = "127.0.0.1:15000/monocore-test/busybox:latest"\ngroup = "g"\n` +
    `port = "${10000 + i}:80"\nenvs = ["K${i}=v"]\ngroup_envs = ["e"]\nvolumes = ["/data/s${i}:/data"]\n` +
    `group_volumes = [{ name = "v", path = "s${i}:/shared" }]\ndepends_on = ${JSON.stringify([...new Set(deps)])}\n`;
}
const broken = toml.replace(/port = "(\d+):80"/g, (_, p) => `port = "${Number(p) % 2 === 0 ? p : 'x'}:80"`).replace(/name = "s1(\d)"/g, 'name = "S1$1"');

function time(label, fn) {
  fn(); // warm-up
  const samples = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    fn();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const median = samples[Math.floor(samples.length / 2)];
  console.log(`${label}: median ${median.toFixed(1)} ms, min ${samples[0].toFixed(1)} ms (${iterations} runs)`);
}

console.log(`config: ${n} services, ${toml.length} bytes of TOML`);
time('parseConfigToml (valid)', () => parseConfigToml(toml));
const cfg = parseConfigToml(toml);
time('planServices (all)', () => planServices(cfg));
const bad = checkConfigToml(broken);
console.log(`broken config: ${bad.ok ? 0 : bad.issues.length} issues`);
time('checkConfigToml (broken, issues placed on lines)', () => checkConfigToml(broken));
