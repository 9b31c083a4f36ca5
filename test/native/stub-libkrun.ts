/**
 * Builds and reads the STUB libkrun (stub-libkrun.c) — NOT the real libkrun.
 * libkrun cannot be installed on these machines (PLATFORM.md), so the binding
 * and the libkrun backend are tested against this recording stand-in; every
 * test that uses it says "stub libkrun" in its name.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('../../../test/native/stub-libkrun.c', import.meta.url));

let built: { full: string; minimal: string } | undefined;

/** Compiles the stub (once per process) with gcc into a temp dir; returns the .so paths. */
export function buildStubLibkrun(): { full: string; minimal: string } {
  if (built) return built;
  if (!existsSync(SOURCE)) throw new Error(`stub libkrun source missing: ${SOURCE}`);
  const dir = mkdtempSync(join(tmpdir(), 'mc-stub-libkrun-'));
  const full = join(dir, 'libkrun.so.1');
  const minimal = join(dir, 'libkrun-minimal.so');
  execFileSync('gcc', ['-shared', '-fPIC', '-Wall', '-Wextra', '-Werror', '-o', full, SOURCE]);
  execFileSync('gcc', ['-shared', '-fPIC', '-Wall', '-Werror', '-DSTUB_LIBKRUN_MINIMAL', '-o', minimal, SOURCE]);
  built = { full, minimal };
  return built;
}

/** The stub's call lines, in order (empty when nothing was recorded). */
export function readStubRecord(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
}

/** How stub-libkrun.c's put_str() prints a C string: the expected text for `s`. */
export function cQuote(s: string): string {
  let out = '"';
  for (const b of Buffer.from(s, 'utf8')) {
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x22) out += '\\"';
    else if (b === 0x0a) out += '\\n';
    else if (b === 0x0d) out += '\\r';
    else if (b === 0x09) out += '\\t';
    else if (b < 0x20 || b >= 0x7f) out += `\\x${b.toString(16).padStart(2, '0')}`;
    else out += String.fromCharCode(b);
  }
  return `${out}"`;
}

/** How stub-libkrun.c prints a NULL-terminated string array. */
export function cArray(items: readonly string[] | null): string {
  if (items === null) return 'NULL';
  return `[${[...items.map(cQuote), 'NULL'].join(', ')}]`;
}
