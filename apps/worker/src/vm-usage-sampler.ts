import { readFileSync } from 'node:fs';

/**
 * CPU and memory of each VM's hypervisor process, read from /proc: CPU as the
 * share of one core since the previous sample, memory as resident set size.
 */
export class VmUsageSampler {
  readonly #samples = new Map<number, { ticks: number; at: number }>();

  sample(pid: number): { cpuPercent: number; memoryBytes: number } | undefined {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (100 Hz)
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const rss = /VmRSS:\s+(\d+) kB/.exec(status);
      const now = Date.now();
      const prev = this.#samples.get(pid);
      this.#samples.set(pid, { ticks, at: now });
      const cpuPercent = prev && now > prev.at ? Math.round(((ticks - prev.ticks) / 100 / ((now - prev.at) / 1000)) * 1000) / 10 : 0;
      return { cpuPercent, memoryBytes: rss ? Number(rss[1]) * 1024 : 0 };
    } catch {
      this.#samples.delete(pid);
      return undefined;
    }
  }

  /** Forget processes that are gone. */
  retain(pids: ReadonlySet<number>): void {
    for (const pid of this.#samples.keys()) if (!pids.has(pid)) this.#samples.delete(pid);
  }
}
