import { MonocoreError } from '../errors/index.js';

/**
 * What an outbound guest may reach when its network has an allow-list
 * (`network = { outbound = true, allow = [...] }`, docs/NETWORK.md "Allow-lists"):
 * exact DNS names, `*.suffix` wildcards, IPv4 addresses and IPv4 CIDR ranges.
 * The one home of the entry syntax (the config schema, VmSpec validation and REST
 * bodies all call it) and of the ranges a guest never reaches through the egress
 * path, whatever it was allowed.
 */

/** Destinations a guest may never reach through the egress path (besides every host address), with what they are. */
export const EGRESS_BLOCKED_RANGES: ReadonlyArray<{ cidr: string; what: string }> = [
  { cidr: '0.0.0.0/8', what: '"this network"' },
  { cidr: '10.0.0.0/8', what: 'private' },
  { cidr: '100.64.0.0/10', what: 'CGNAT, and the egress pool' },
  { cidr: '127.0.0.0/8', what: 'loopback' },
  { cidr: '169.254.0.0/16', what: 'link-local, cloud metadata' },
  { cidr: '172.16.0.0/12', what: 'private' },
  { cidr: '192.168.0.0/16', what: 'private' },
  { cidr: '224.0.0.0/3', what: 'multicast and reserved' },
];
export const EGRESS_BLOCKED = EGRESS_BLOCKED_RANGES.map((r) => r.cidr);

export type EgressAllowEntry =
  /** Exactly this name (lowercase, no trailing dot). */
  | { kind: 'name'; name: string }
  /** Any name below `suffix` (one or more labels more), not `suffix` itself. */
  | { kind: 'suffix'; suffix: string }
  | { kind: 'address'; address: string }
  /** Network address / prefix length, host bits zero. */
  | { kind: 'range'; cidr: string };

export type EntryParse = { ok: true; value: EgressAllowEntry } | { ok: false; error: string };

const LABEL_RE = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Dotted-quad IPv4 as an unsigned 32-bit number; undefined if not one (no leading zeros: "010" is not 8 or 10). */
export function ipv4ToNumber(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

const numberToIpv4 = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
const maskOf = (prefix: number): number => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);

const BLOCKED = EGRESS_BLOCKED_RANGES.map((r) => {
  const [base, len] = r.cidr.split('/');
  return { ...r, base: ipv4ToNumber(base!)!, prefix: Number(len) };
});

/** The blocked range holding this IPv4 address, if any ("10.0.0.0/8 (private)"). */
export function egressBlockedRange(address: string): string | undefined {
  const n = ipv4ToNumber(address);
  if (n === undefined) return 'not an IPv4 address';
  const hit = BLOCKED.find((b) => ((n & maskOf(b.prefix)) >>> 0) === b.base);
  return hit ? `${hit.cidr} (${hit.what})` : undefined;
}

/** The blocked range that wholly contains base/prefix, if any. */
function blockedRangeContaining(base: number, prefix: number): string | undefined {
  const hit = BLOCKED.find((b) => prefix >= b.prefix && ((base & maskOf(b.prefix)) >>> 0) === b.base);
  return hit ? `${hit.cidr} (${hit.what})` : undefined;
}

const NEVER = 'guests never reach private, loopback, link-local, CGNAT or multicast addresses (docs/NETWORK.md)';

function checkName(name: string, raw: string): string | undefined {
  if (name.length > 253) return `${JSON.stringify(raw)} is longer than 253 characters`;
  const labels = name.split('.');
  for (const l of labels) {
    if (l === '') return `${JSON.stringify(raw)} has an empty label`;
    if (!LABEL_RE.test(l)) return `${JSON.stringify(raw)}: label ${JSON.stringify(l)} is not a DNS label (a-z, 0-9, "-", "_"; 1..63 characters; no "-" at either end)`;
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return `${JSON.stringify(raw)} is neither an IPv4 address nor a DNS name`;
  return undefined;
}

/** Parses one entry; the error says what is wrong with it and what is accepted. */
export function parseEgressAllowEntry(raw: string): EntryParse {
  const fail = (error: string): EntryParse => ({ ok: false, error });
  if (typeof raw !== 'string' || raw.trim() === '') return fail('must be a DNS name, *.suffix, an IPv4 address or an IPv4 CIDR range, got an empty entry');
  if (raw !== raw.trim()) return fail(`${JSON.stringify(raw)} has leading or trailing spaces`);
  if (/[^\x21-\x7e]/.test(raw)) return fail(`${JSON.stringify(raw)}: only ASCII is allowed (write internationalised names in punycode, xn--…)`);
  if (/^[^:/]+:[0-9]+$/.test(raw)) return fail(`${JSON.stringify(raw)}: ports are not part of an entry (every port of an allowed destination is allowed)`);
  if (raw.includes(':')) return fail(`${JSON.stringify(raw)}: IPv6 is not supported (the outbound path is IPv4 only)`);
  if (raw.includes('/')) {
    const [base, len, ...rest] = raw.split('/');
    const b = ipv4ToNumber(base!);
    if (rest.length > 0 || b === undefined || !/^(0|[1-9][0-9]?)$/.test(len!) || Number(len) > 32) {
      return fail(`${JSON.stringify(raw)} is not an IPv4 CIDR range like 203.0.113.0/24`);
    }
    const prefix = Number(len);
    const network = (b & maskOf(prefix)) >>> 0;
    if (network !== b) return fail(`${JSON.stringify(raw)} has host bits set (did you mean ${numberToIpv4(network)}/${prefix}?)`);
    const blocked = blockedRangeContaining(b, prefix);
    if (blocked) return fail(`${raw} lies in ${blocked}: ${NEVER}`);
    return { ok: true, value: prefix === 32 ? { kind: 'address', address: base! } : { kind: 'range', cidr: raw } };
  }
  if (/^[0-9.]+$/.test(raw)) {
    if (ipv4ToNumber(raw) === undefined) return fail(`${JSON.stringify(raw)} is not an IPv4 address`);
    const blocked = egressBlockedRange(raw);
    if (blocked) return fail(`${raw} lies in ${blocked}: ${NEVER}`);
    return { ok: true, value: { kind: 'address', address: raw } };
  }
  if (raw === '*' || raw === '*.') return fail('"*" would allow every name: leave allow out for unrestricted outbound access');
  const lower = raw.toLowerCase();
  const name = lower.endsWith('.') ? lower.slice(0, -1) : lower;
  if (name.startsWith('*.')) {
    const suffix = name.slice(2);
    if (suffix.includes('*')) return fail(`${JSON.stringify(raw)}: "*" may only stand alone as the first label, as in *.example.com`);
    const problem = checkName(suffix, raw);
    if (problem) return fail(problem);
    if (!suffix.includes('.')) return fail(`${JSON.stringify(raw)} covers a whole top-level domain; name at least two labels (*.example.com)`);
    return { ok: true, value: { kind: 'suffix', suffix } };
  }
  if (name.includes('*')) return fail(`${JSON.stringify(raw)}: "*" may only stand alone as the first label, as in *.example.com`);
  const problem = checkName(name, raw);
  if (problem) return fail(problem);
  if (!name.includes('.')) return fail(`${JSON.stringify(raw)} is a single-label name; allow fully qualified names (pypi.org)`);
  return { ok: true, value: { kind: 'name', name } };
}

/** The problem with one entry, or undefined (for zod leaf schemas). */
export function checkEgressAllowEntry(raw: string): string | undefined {
  const r = parseEgressAllowEntry(raw);
  return r.ok ? undefined : r.error;
}

/** The normal form of an entry: duplicates are entries with the same key. */
export function egressAllowEntryKey(e: EgressAllowEntry): string {
  switch (e.kind) {
    case 'name':
      return e.name;
    case 'suffix':
      return `*.${e.suffix}`;
    case 'address':
      return e.address;
    case 'range':
      return e.cidr;
  }
}

export interface EgressAllowListProblem {
  kind: 'entry' | 'duplicate' | 'empty';
  /** The entry's index; -1 for the list itself. */
  index: number;
  message: string;
}

export const EMPTY_ALLOW_LIST = 'an empty allow-list allows nothing: leave allow out for unrestricted outbound access, or turn outbound off';

/**
 * Problems of a whole list, each with the index of its entry (-1: the list itself):
 * bad entries, duplicates, and an empty list (which would allow nothing at all).
 */
export function egressAllowListProblems(entries: readonly unknown[], name: (index: number) => string = (i) => `entry ${i}`): EgressAllowListProblem[] {
  const out: EgressAllowListProblem[] = [];
  if (entries.length === 0) out.push({ kind: 'empty', index: -1, message: EMPTY_ALLOW_LIST });
  const seen = new Map<string, number>();
  entries.forEach((raw, index) => {
    if (typeof raw !== 'string') return void out.push({ kind: 'entry', index, message: 'must be a string' });
    const r = parseEgressAllowEntry(raw);
    if (!r.ok) return void out.push({ kind: 'entry', index, message: r.error });
    const key = egressAllowEntryKey(r.value);
    const first = seen.get(key);
    if (first !== undefined) out.push({ kind: 'duplicate', index, message: `duplicate entry ${JSON.stringify(key)} (also ${name(first)})` });
    else seen.set(key, index);
  });
  return out;
}

/** A parsed allow-list: which names may be resolved, which ranges may be reached without a name. */
export class EgressAllowList {
  private readonly names: ReadonlySet<string>;
  private readonly suffixes: readonly string[];
  /** IPv4 addresses and CIDR ranges, for the namespace's static set. */
  readonly ranges: readonly string[];

  private constructor(readonly entries: readonly EgressAllowEntry[]) {
    this.names = new Set(entries.flatMap((e) => (e.kind === 'name' ? [e.name] : [])));
    this.suffixes = entries.flatMap((e) => (e.kind === 'suffix' ? [e.suffix] : []));
    this.ranges = entries.flatMap((e) => (e.kind === 'address' ? [e.address] : e.kind === 'range' ? [e.cidr] : []));
  }

  /**
   * Parses a list from an untrusted source (a REST body, a VmSpec); throws
   * MC_VM_EGRESS_ALLOW_INVALID naming the first bad entry as `<field>[i]`.
   */
  static parse(entries: readonly unknown[], field = 'network.allow'): EgressAllowList {
    if (!Array.isArray(entries)) {
      throw new MonocoreError('MC_VM_EGRESS_ALLOW_INVALID', `${field}: must be a list of names, *.suffixes, IPv4 addresses or CIDR ranges`, { field });
    }
    const where = (i: number): string => (i < 0 ? field : `${field}[${i}]`);
    const problems = egressAllowListProblems(entries, where);
    if (problems.length > 0) {
      const [first] = problems;
      throw new MonocoreError('MC_VM_EGRESS_ALLOW_INVALID', `${where(first!.index)}: ${first!.message}`, {
        field: where(first!.index),
        issues: problems.map((p) => ({ path: where(p.index), message: p.message })),
      });
    }
    return new EgressAllowList(entries.map((raw) => (parseEgressAllowEntry(raw as string) as { value: EgressAllowEntry }).value));
  }

  /** Whether `name` (any case, optional trailing dot) is allowed by an exact entry or a wildcard. */
  allowsName(name: string): boolean {
    const n = name.toLowerCase().replace(/\.$/, '');
    if (this.names.has(n)) return true;
    return this.suffixes.some((s) => n.endsWith(`.${s}`));
  }

  /** The entries as written in normal form (what a VmSpec carries). */
  toStrings(): string[] {
    return this.entries.map(egressAllowEntryKey);
  }
}
