import type { PullProgress } from '@monocore/engine/oci';

const MB = 1024 * 1024;

export function formatBytes(n: number): string {
  if (n >= 1024 * MB) return `${(n / (1024 * MB)).toFixed(2)} GB`;
  if (n >= MB) return `${(n / MB).toFixed(1)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${n} B`;
}

/**
 * Renders pull/import progress on stderr: a redrawn bar on a terminal, plain
 * lines otherwise (one per phase change and per finished layer, plus at most one
 * summary line every 2 s), so logs stay readable.
 */
export function progressReporter(label: string, stream: NodeJS.WriteStream = process.stderr): { update(p: PullProgress): void; finish(): void } {
  const tty = stream.isTTY === true;
  let phase = '';
  let lastLine = 0;
  const finished = new Set<string>();
  let drawn = false;
  return {
    update(p) {
      if (tty) {
        const width = 30;
        const ratio = p.total > 0 ? p.done / p.total : p.phase === 'done' ? 1 : 0;
        const fill = Math.round(ratio * width);
        const bar = `${'█'.repeat(fill)}${'░'.repeat(width - fill)}`;
        const layersDone = p.layers.filter((l) => l.done >= l.total).length;
        const text =
          p.phase === 'resolving'
            ? `${label}: resolving…`
            : `${label}: ${p.phase.padEnd(11)} ${bar} ${(ratio * 100).toFixed(0).padStart(3)}% ${formatBytes(p.done)}/${formatBytes(p.total)} (${layersDone}/${p.layers.length} layers)`;
        stream.write(`\r\x1b[2K${text}`);
        drawn = true;
        return;
      }
      const now = Date.now();
      if (p.phase !== phase) {
        phase = p.phase;
        if (p.phase !== 'done') stream.write(`${label}: ${p.phase}${p.total > 0 ? ` (${p.layers.length} layers, ${formatBytes(p.total)})` : ''}\n`);
      }
      for (const l of p.layers) {
        if (l.done >= l.total && !finished.has(l.digest)) {
          finished.add(l.digest);
          if (p.phase === 'downloading') stream.write(`${label}: layer ${l.digest.slice(7, 19)} ${formatBytes(l.total)} done\n`);
        }
      }
      if ((p.phase === 'downloading' || p.phase === 'unpacking') && now - lastLine > 2000 && p.done > 0 && p.done < p.total) {
        lastLine = now;
        stream.write(`${label}: ${p.phase === 'unpacking' ? 'unpacked' : 'downloaded'} ${formatBytes(p.done)}/${formatBytes(p.total)}\n`);
      }
    },
    finish() {
      if (tty && drawn) stream.write('\r\x1b[2K');
    },
  };
}
