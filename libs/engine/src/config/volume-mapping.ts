import { unwrap, type ParseResult } from './port-mapping.js';

/** A parsed volume: host path mounted at guest path. */
export interface VolumeMapping {
  host: string;
  guest: string;
}

export interface VolumePathOptions {
  /** Allow a relative host side (group_volumes: relative to the group volume's base path). */
  relativeHost?: boolean;
}

/**
 * Checks one path (`label` names it in the message, e.g. "host path"): no empty components (`//`, trailing `/` other than the root
 * itself), no `.` or `..`, no NUL; absolute unless `relative` is allowed.
 * Returns the reason it is rejected, or undefined.
 */
export function checkPath(path: string, label: string, relative = false): string | undefined {
  if (path === '') return `${label} is empty`;
  if (path.includes('\0')) return `${label} must not contain NUL bytes`;
  const absolute = path.startsWith('/');
  if (!absolute && !relative) return `${label} "${path}" must be absolute (start with "/")`;
  if (path === '/') return undefined;
  const parts = (absolute ? path.slice(1) : path).split('/');
  for (const part of parts) {
    if (part === '..') return `${label} "${path}" must not contain ".."`;
    if (part === '.') return `${label} "${path}" must not contain "." components`;
    if (part === '') return `${label} "${path}" has an empty component ("//" or a trailing "/")`;
  }
  return undefined;
}

/**
 * Parses `"/path"` (same path on host and guest) or `"/host:/guest"`. Both sides
 * must be absolute, without `..`, `.` or empty components.
 */
export function tryParseVolumeMapping(input: string, options: VolumePathOptions = {}): ParseResult<VolumeMapping> {
  const parts = input.split(':');
  if (input === '' || parts.length > 2) {
    return { ok: false, error: `volume "${input}" must be "/path" or "/host:/guest"` };
  }
  const host = parts[0] ?? '';
  const guest = parts.length === 2 ? (parts[1] ?? '') : host;
  const hostProblem = checkPath(host, 'host path', options.relativeHost === true);
  if (hostProblem) return { ok: false, error: `volume "${input}": ${hostProblem}` };
  const guestProblem = checkPath(guest, 'guest path');
  if (guestProblem) return { ok: false, error: `volume "${input}": ${guestProblem}` };
  return { ok: true, value: { host, guest } };
}

/** Joins a normalised absolute base with a checked relative or absolute path. */
export function joinUnder(base: string, path: string): string {
  if (path.startsWith('/')) return path;
  return base === '/' ? `/${path}` : `${base}/${path}`;
}

/** True when `path` equals `base` or lies inside it (both checked, absolute). */
export function isUnder(base: string, path: string): boolean {
  return base === '/' || path === base || path.startsWith(`${base}/`);
}

/** Parses `"/path"` or `"/host:/guest"`; throws MC_CONFIG_INVALID naming the problem. */
export function parseVolumeMapping(input: string, options: VolumePathOptions = {}): VolumeMapping {
  return unwrap(tryParseVolumeMapping(input, options));
}
