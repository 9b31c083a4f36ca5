import type { PathSegment } from './config-issue.js';

/**
 * Maps a config path (`service[2].depends_on[0]`) to a line and column of the
 * TOML text it came from. A light scan, not a second parser: it knows table
 * headers (`[[service]]`, `[[group.volume]]`), `key = value` lines and the
 * elements of array values. Anything it cannot place (inline tables at the top
 * level, dotted keys) maps to the nearest enclosing spot it does know, or to nothing.
 */
export interface SourcePosition {
  line: number;
  column: number;
}

interface Header {
  /** Dotted table name without quotes: `service`, `group.volume`. */
  name: string;
  array: boolean;
  offset: number;
}

interface KeyEntry {
  /** Index of the header the key belongs to; -1 for the root table. */
  header: number;
  key: string;
  offset: number;
  /** Offset just after the `=`. */
  valueOffset: number;
}

const unquote = (k: string) => k.trim().replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');

export class SourcePositionIndex {
  private readonly lineStarts: number[] = [0];
  private readonly headers: Header[] = [];
  private readonly keys: KeyEntry[] = [];

  constructor(private readonly text: string) {
    for (let i = 0; i < text.length; i++) if (text[i] === '\n') this.lineStarts.push(i + 1);
    this.scan();
  }

  /** 1-based line and column of an offset. */
  positionOf(offset: number): SourcePosition {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.lineStarts[mid] ?? 0) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - (this.lineStarts[lo] ?? 0) + 1 };
  }

  /** Best known position of `path`, or undefined. */
  locate(path: readonly PathSegment[]): SourcePosition | undefined {
    const offset = this.locateOffset(path);
    return offset === undefined ? undefined : this.positionOf(offset);
  }

  private locateOffset(path: readonly PathSegment[]): number | undefined {
    if (path.length === 0) return undefined;
    // Walk headers: `service[i]`, then optionally `volume[j]` of a `[[group]]`.
    let headerIdx = -1;
    let rest = [...path];
    let end = this.headers.length; // headers before this index belong to the current scope
    let tableName = '';
    while (typeof rest[0] === 'string' && typeof rest[1] === 'number') {
      const name = tableName === '' ? rest[0] : `${tableName}.${rest[0]}`;
      const n = rest[1];
      let count = -1;
      let found = -1;
      for (let h = headerIdx + 1; h < end; h++) {
        const hd = this.headers[h];
        if (!hd) continue;
        if (hd.array && hd.name === name && ++count === n) {
          found = h;
          break;
        }
      }
      if (found < 0) break; // not an array of tables: maybe `key = [ ... ]` of the current table
      headerIdx = found;
      tableName = name;
      // The scope of this table ends at the next header of the same or an outer array.
      const nextSibling = this.headers.findIndex(
        (hd, i) => i > found && (hd.name === name || !hd.name.startsWith(`${name}.`)),
      );
      end = nextSibling < 0 ? this.headers.length : nextSibling;
      rest = rest.slice(2);
    }
    const headerOffset = headerIdx >= 0 ? this.headers[headerIdx]?.offset : undefined;
    const key = rest[0];
    if (typeof key !== 'string') return headerOffset;
    const entry = this.keys.find((k) => k.header === headerIdx && k.key === key);
    if (!entry) {
      // `[service]` written where `[[service]]` was meant: point at that header.
      // (An index that was not found, `service[7]`, stays with the enclosing table.)
      if (typeof rest[1] === 'number') return headerOffset;
      const full = tableName === '' ? key : `${tableName}.${key}`;
      const table = this.headers.slice(headerIdx + 1, end).find((hd) => hd.name === full);
      return table?.offset ?? headerOffset;
    }
    const element = rest[1];
    if (typeof element !== 'number') return entry.offset;
    return this.arrayElementOffset(entry.valueOffset, element) ?? entry.offset;
  }

  /** Offset of the n-th element of the array value starting at/after `from`. */
  private arrayElementOffset(from: number, n: number): number | undefined {
    const t = this.text;
    let i = from;
    let depth = 0;
    let index = -1;
    let expectElement = false;
    while (i < t.length) {
      const c = t[i];
      if (c === '#') {
        while (i < t.length && t[i] !== '\n') i++;
        continue;
      }
      if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
        i++;
        continue;
      }
      if (depth === 0) {
        if (c !== '[') return undefined;
        depth = 1;
        expectElement = true;
        i++;
        continue;
      }
      if (depth === 1 && expectElement && c !== ']' && c !== ',') {
        index++;
        if (index === n) return i;
        expectElement = false;
      }
      if (c === '"' || c === "'") {
        i = this.skipString(i);
        continue;
      }
      if (c === '[' || c === '{') depth++;
      else if (c === ']' || c === '}') {
        depth--;
        if (depth === 0) return undefined;
      } else if (c === ',' && depth === 1) expectElement = true;
      i++;
    }
    return undefined;
  }

  /** Returns the offset just after the string starting at `i`. */
  private skipString(i: number): number {
    const t = this.text;
    const q = t[i] ?? '"';
    const triple = t.startsWith(q.repeat(3), i);
    if (triple) {
      const close = t.indexOf(q.repeat(3), i + 3);
      return close < 0 ? t.length : close + 3;
    }
    let j = i + 1;
    while (j < t.length && t[j] !== q && t[j] !== '\n') {
      if (q === '"' && t[j] === '\\') j++;
      j++;
    }
    return j + 1;
  }

  private scan(): void {
    const t = this.text;
    let header = -1;
    let i = 0;
    while (i < t.length) {
      // at the start of a line
      let j = i;
      while (t[j] === ' ' || t[j] === '\t') j++;
      const lineEnd = t.indexOf('\n', j) < 0 ? t.length : t.indexOf('\n', j);
      const line = t.slice(j, lineEnd);
      const hm = /^\[\[\s*([^\]]+?)\s*\]\]/.exec(line) ?? /^\[\s*([^\]]+?)\s*\]/.exec(line);
      if (hm) {
        const name = (hm[1] ?? '').split('.').map(unquote).join('.');
        this.headers.push({ name, array: line.startsWith('[['), offset: j });
        header = this.headers.length - 1;
        i = lineEnd + 1;
        continue;
      }
      const km = /^("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=/.exec(line);
      if (km) {
        const valueOffset = j + km[0].length;
        this.keys.push({ header, key: unquote(km[1] ?? ''), offset: j, valueOffset });
        // Skip the whole value (it may span lines: arrays, multi-line strings).
        i = this.skipValue(valueOffset);
        continue;
      }
      i = lineEnd + 1;
    }
  }

  /** Offset of the line after the value that starts at/after `from`. */
  private skipValue(from: number): number {
    const t = this.text;
    let i = from;
    let depth = 0;
    while (i < t.length) {
      const c = t[i];
      if (c === '#') {
        while (i < t.length && t[i] !== '\n') i++;
        continue;
      }
      if (c === '"' || c === "'") {
        i = this.skipString(i);
        continue;
      }
      if (c === '[' || c === '{') depth++;
      else if (c === ']' || c === '}') depth = Math.max(0, depth - 1);
      else if (c === '\n' && depth === 0) return i + 1;
      i++;
    }
    return t.length;
  }
}
