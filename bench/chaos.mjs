// The chaos soak for as long as you like (test/chaos/soak.ts: 3 workers, the API and
// Redis as processes, 20 services in real VMs, random kill -9 / Redis SIGKILL /
// partitions / deployments, a 10 Hz watcher). CI runs 2 minutes of it as a test.
//
//   npm run bench -- chaos 15            # 15 minutes of faults
//   npm run bench -- chaos 15 12345      # replay a seed
// Prints the fault log and a JSON report; record it in bench/RESULTS.md with the command.
// Exit code 0 only when every check held.
import { runSoak } from '../dist/test/chaos/soak.js';

const minutes = Number(process.argv[2] ?? 15);
const seed = process.argv[3] !== undefined ? Number(process.argv[3]) : undefined;
if (!Number.isFinite(minutes) || minutes <= 0) {
  console.error('usage: node bench/chaos.mjs MINUTES [SEED]');
  process.exit(2);
}
const t0 = Date.now();
const report = await runSoak({
  durationMs: Math.round(minutes * 60_000),
  ...(seed !== undefined ? { seed } : {}),
  log: (line) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(7)} s] ${line}`),
});
console.log(JSON.stringify(report, null, 2));
process.exit(report.ok ? 0 : 1);
