/**
 * Helpers of the sandbox tests: a real API (startApi, on a free loopback port)
 * and real workers booting QEMU microVMs under TCG, on a private Redis
 * database; small typed REST helpers.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { startApi, type RunningApi, type StartApiOptions } from '@monocore/api';
import { startWorker, type MonocoreWorker, type StartWorkerOptions } from '@monocore/worker';
import type { ExecResult, Sandbox } from '@monocore/api-schemas';
import { freshDb, quiet, removeDir, tempHome, vmEnv } from '../orchestration/support.js';

export interface Stack {
  url: string;
  redisUrl: string;
  redis: Redis;
  api: RunningApi;
  workers: MonocoreWorker[];
  homes: string[];
  close(): Promise<void>;
}

export async function startStack(
  db: number,
  opts: { workers?: Array<Partial<StartWorkerOptions> & { hostId: string }>; api?: Partial<StartApiOptions> } = {},
): Promise<Stack> {
  vmEnv();
  const redisUrl = await freshDb(db);
  const workers: MonocoreWorker[] = [];
  const homes: string[] = [];
  for (const w of opts.workers ?? [{ hostId: 'sb1' }]) {
    const home = tempHome(w.hostId);
    homes.push(home);
    workers.push(await startWorker({ redisUrl, home, cpus: 64, ramMib: 8 * 1024, leaseMs: 4000, bootTimeoutMs: 60_000, logger: quiet, ...w }));
  }
  const api = await startApi({ redisUrl, port: 0, logger: quiet, jobs: { pullAttempts: 1, pullBackoffMs: 100 }, ...opts.api });
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 3 });
  return {
    url: api.url,
    redisUrl,
    redis,
    api,
    workers,
    homes,
    async close() {
      await api.close();
      for (const w of workers) await w.close({ handBack: false }).catch(() => undefined);
      await redis.quit();
      for (const h of homes) removeDir(h);
    },
  };
}

export interface JsonResponse<T> {
  status: number;
  body: T;
  headers: Headers;
}

export async function call<T = unknown>(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<JsonResponse<T>> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text.length > 0 ? JSON.parse(text) : undefined;
  } catch {
    // not JSON (NDJSON, raw bytes): the text
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}

export async function createSandbox(url: string, body: Record<string, unknown>): Promise<Sandbox> {
  const r = await call<Sandbox>(url, 'POST', '/sandboxes', body);
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function exec(url: string, target: string, body: Record<string, unknown>): Promise<ExecResult> {
  const r = await call<ExecResult>(url, 'POST', `${target}/exec`, body);
  if (r.status !== 200) throw new Error(`exec ${JSON.stringify(body.cmd)} failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/**
 * Live QEMU processes of a sandbox under one of `homes`: those whose command line names its state
 * dir, and those its pid record names (`<home>/run/vm-<id>-<pid>.json`, orphans.ts) — a sandbox
 * that adopted a spare (docs/SNAPSHOTS.md "Spares") runs in a QEMU whose command line names the
 * spare's dir, so the record is what says whose it is.
 */
export function sandboxVms(id: string, homes: string[]): number[] {
  const out = new Set<number>();
  /** A live QEMU's argv (a zombie's is empty), or undefined. */
  const qemuArgv = (p: string): string[] | undefined => {
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      return /(^|\/)qemu-system[^/]*$/.test(argv[0] ?? '') ? argv : undefined;
    } catch {
      return undefined;
    }
  };
  for (const p of readdirSync('/proc')) {
    const line = /^\d+$/.test(p) ? qemuArgv(p)?.join(' ') : undefined;
    if (line && homes.some((h) => line.includes(`${h}/sandboxes/${id}/`))) out.add(Number(p));
  }
  for (const h of homes) {
    let names: string[];
    try {
      names = readdirSync(`${h}/run`);
    } catch {
      continue;
    }
    for (const n of names) {
      const pid = n.startsWith(`vm-${id}-`) ? /-(\d+)\.json$/.exec(n)?.[1] : undefined;
      if (pid && qemuArgv(pid)) out.add(Number(pid));
    }
  }
  return [...out];
}
