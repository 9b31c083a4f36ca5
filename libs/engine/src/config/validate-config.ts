import { z } from 'zod';
import { MonocoreError } from '../errors/index.js';
import { closestMatch, formatIssue, formatPath, showValue, splitPath, type ConfigIssue } from './config-issue.js';
import { MonocoreConfigSchema, type MonocoreConfig } from './monocore-config-schema.js';
import { semanticIssues } from './semantic-checks.js';
import type { SourcePositionIndex } from './source-positions.js';

export type ConfigCheckResult = { ok: true; config: MonocoreConfig } | { ok: false; issues: ConfigIssue[] };

export interface ValidateOptions {
  /** Where the config came from (file name), used in the error message. */
  source?: string;
  /** Position index of the TOML text, to attach line/column to each issue. */
  positions?: SourcePositionIndex;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (v instanceof Date) return 'date';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'float';
  if (typeof v === 'object') return 'table';
  return typeof v;
}

const expectedName: Record<string, string> = { object: 'table', number: 'number' };

/** Messages in the config's own words (tables, keys) rather than zod's. */
const errorMap: z.core.$ZodErrorMap = (iss) => {
  if (iss.code === 'invalid_type') {
    if (iss.input === undefined) return 'is required';
    return `expected ${expectedName[iss.expected] ?? iss.expected}, got ${typeName(iss.input)}`;
  }
  if (iss.code === 'invalid_value') {
    return `must be one of ${iss.values.map((v) => showValue(v)).join(', ')}, got ${showValue(iss.input)}`;
  }
  return undefined;
};

/** The keys a strict object at `path` accepts, found by walking the schema. */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let schema: z.ZodType = MonocoreConfigSchema;
  const unwrap = (s: z.ZodType): z.ZodType => {
    for (;;) {
      if (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
      else return s;
    }
  };
  for (const seg of path) {
    schema = unwrap(schema);
    if (typeof seg === 'number' && schema instanceof z.ZodArray) schema = schema.element as z.ZodType;
    else if (typeof seg === 'string' && schema instanceof z.ZodObject) {
      const next = (schema.shape as Record<string, z.ZodType>)[seg];
      if (!next) return [];
      schema = next;
    } else return [];
  }
  schema = unwrap(schema);
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

/** `[service]` instead of `[[service]]` is the classic TOML slip: say so. */
function tableArrayHint(path: readonly PropertyKey[], message: string): string {
  if (message !== 'expected array, got table') return message;
  const table = path.filter((p): p is string => typeof p === 'string').join('.');
  if (!['service', 'group', 'group.volume', 'group.env'].includes(table)) return message;
  return `expected an array of tables: write [[${table}]], not [${table}]`;
}

function zodIssues(error: z.ZodError): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const iss of error.issues) {
    if (iss.code === 'unrecognized_keys') {
      const known = knownKeysAt(iss.path);
      for (const key of iss.keys) {
        const guess = closestMatch(key, known);
        out.push({
          path: formatPath([...iss.path, key]),
          message: `unknown key "${key}"${guess !== undefined ? ` (did you mean "${guess}"?)` : ''}`,
        });
      }
    } else {
      out.push({ path: formatPath(iss.path), message: tableArrayHint(iss.path, iss.message) });
    }
  }
  return out;
}

/** Sorts issues by line when known (top-down reading), else keeps the order found. */
function placeAndSort(issues: ConfigIssue[], positions: SourcePositionIndex | undefined): ConfigIssue[] {
  const placed = issues.map((issue) => {
    const pos = positions?.locate(splitPath(issue.path));
    return pos ? { ...issue, line: pos.line, column: pos.column } : issue;
  });
  // Drop exact duplicates (the same message at the same path from two checks).
  const seen = new Set<string>();
  const unique = placed.filter((i) => {
    const k = `${i.path}\0${i.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  return unique
    .map((issue, order) => ({ issue, order }))
    .sort((a, b) => (a.issue.line ?? Infinity) - (b.issue.line ?? Infinity) || (a.issue.column ?? 0) - (b.issue.column ?? 0) || a.order - b.order)
    .map(({ issue }) => issue);
}

/**
 * Checks a config (parsed TOML or a JSON body) without throwing: every schema
 * problem and every cross-field problem, all at once.
 */
export function checkConfig(value: unknown, options: ValidateOptions = {}): ConfigCheckResult {
  const parsed = MonocoreConfigSchema.safeParse(value, { error: errorMap });
  const issues = [...(parsed.success ? [] : zodIssues(parsed.error)), ...semanticIssues(value)];
  if (issues.length === 0 && parsed.success) return { ok: true, config: parsed.data };
  return { ok: false, issues: placeAndSort(issues, options.positions) };
}

/** Builds the MC_CONFIG_INVALID error for a list of issues. */
export function configInvalidError(issues: ConfigIssue[], source?: string): MonocoreError {
  const where = source !== undefined ? ` in ${source}` : '';
  const head = `invalid configuration${where}: ${issues.length} problem${issues.length === 1 ? '' : 's'}`;
  const lines = issues.map((i) => `  ${i.line !== undefined ? `line ${i.line}: ` : ''}${formatIssue(i)}`);
  return new MonocoreError('MC_CONFIG_INVALID', [head, ...lines].join('\n'), {
    issues,
    ...(source !== undefined ? { source } : {}),
  });
}

/**
 * Validates a config value and returns it typed with every default applied, or
 * throws MonocoreError('MC_CONFIG_INVALID') whose `details.issues` lists every problem.
 */
export function validateConfig(value: unknown, options: ValidateOptions = {}): MonocoreConfig {
  const result = checkConfig(value, options);
  if (!result.ok) throw configInvalidError(result.issues, options.source);
  return result.config;
}
