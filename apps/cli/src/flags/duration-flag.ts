import { MonocoreError } from '@monocore/engine/errors';

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/** Seconds from `90`, `90s`, `10m`, `1h`, `2d`, within min..max, or MC_USAGE naming the flag. */
export function durationFlag(flag: string, value: string, min: number, max: number): number {
  const m = /^(\d+)(s|m|h|d)?$/.exec(value.trim());
  const seconds = m ? Number(m[1]) * UNIT_SECONDS[(m[2] ?? 's') as keyof typeof UNIT_SECONDS] : NaN;
  if (!Number.isSafeInteger(seconds) || seconds < min || seconds > max) {
    throw new MonocoreError('MC_USAGE', `${flag}: ${JSON.stringify(value)} must be a duration from ${min}s to ${max}s, like 600, 90s, 10m, 1h or 2d`);
  }
  return seconds;
}
