import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';

/**
 * What the CLI writes to MONOCORE_HOME/run/daemon.json when it starts the local
 * daemon: enough to find it again (URL), to tell whether it still runs (pid and
 * its start time, so a later process given the same pid is not taken for it),
 * and to stop it and everything it started (its session: it is the leader).
 */
export const DaemonRecordSchema = z.object({
  pid: z.number().int().positive(),
  /** /proc/<pid>/stat starttime (clock ticks after boot). */
  startTime: z.number().int().nonnegative(),
  url: z.url({ protocol: /^http$/ }),
  startedAt: z.iso.datetime(),
  version: z.string(),
  log: z.string(),
});
export type DaemonRecord = z.infer<typeof DaemonRecordSchema>;

/** The record, undefined when there is none, or why it cannot be used (hand-edited, truncated by a full disk). */
export async function readDaemonRecord(path: string): Promise<DaemonRecord | { unreadable: string } | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { unreadable: (err as Error).message };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { unreadable: 'not JSON' };
  }
  const parsed = DaemonRecordSchema.safeParse(json);
  if (!parsed.success) return { unreadable: parsed.error.issues.map((i) => `${i.path.join('.') || 'record'}: ${i.message}`).join('; ') };
  return parsed.data;
}

/** Written whole or not at all (rename), readable by this user only (it names the daemon's log and URL). */
export async function writeDaemonRecord(path: string, record: DaemonRecord): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(`${path}.tmp`, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

export async function removeDaemonRecord(path: string): Promise<void> {
  await rm(path, { force: true });
}
