import { MonocoreError } from '../errors/index.js';
import { ConfigLimits } from './limits.js';

/** A parsed `port` value: `"8080"` → {host: 8080, guest: 8080}; `"8080:80"` → {host: 8080, guest: 80}. */
export interface PortMapping {
  host: number;
  guest: number;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

function parsePort(s: string, side: string): number | string {
  if (!/^[0-9]{1,5}$/.test(s)) return `${side} port "${s}" is not a number`;
  const n = Number(s);
  if (n < ConfigLimits.portMin || n > ConfigLimits.portMax) {
    return `${side} port ${n} is out of range ${ConfigLimits.portMin}..${ConfigLimits.portMax}`;
  }
  return n;
}

/** Parses `"N"` or `"H:G"` with each port in 1..65535. */
export function tryParsePortMapping(input: string): ParseResult<PortMapping> {
  const parts = input.split(':');
  if (input === '' || parts.length > 2) {
    return { ok: false, error: `port "${input}" must be "PORT" or "HOST:GUEST" (e.g. "8080" or "8080:80")` };
  }
  const host = parsePort(parts[0] ?? '', parts.length === 2 ? 'host' : 'the');
  if (typeof host === 'string') return { ok: false, error: `port "${input}": ${host}` };
  if (parts.length === 1) return { ok: true, value: { host, guest: host } };
  const guest = parsePort(parts[1] ?? '', 'guest');
  if (typeof guest === 'string') return { ok: false, error: `port "${input}": ${guest}` };
  return { ok: true, value: { host, guest } };
}

/** Parses `"N"` or `"H:G"`; throws MC_CONFIG_INVALID naming the problem. */
export function parsePortMapping(input: string): PortMapping {
  return unwrap(tryParsePortMapping(input));
}

/** Returns the value or throws MC_CONFIG_INVALID with the parse error as message. */
export function unwrap<T>(result: ParseResult<T>): T {
  if (result.ok) return result.value;
  throw new MonocoreError('MC_CONFIG_INVALID', result.error, { issues: [{ path: '', message: result.error }] });
}
