import { MonocoreError } from '@monocore/engine/errors';

/** A whole number in min..max, or MC_USAGE naming the flag and the value. */
export function intFlag(flag: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new MonocoreError('MC_USAGE', `${flag}: ${JSON.stringify(value)} must be an integer in ${min}..${max}`);
  }
  return Number(value);
}
