import { existsSync } from 'node:fs';
import { Libkrun } from './libkrun.js';
import { LibkrunError } from './libkrun-error.js';

/** Environment variable naming the libkrun shared library to use (a path or a loader name). */
export const LIBKRUN_PATH_ENV = 'MONOCORE_LIBKRUN_PATH';

export type LibkrunProbe =
  | { available: true; path: string; exported: string[] }
  | { available: false; reason: string; tried: string[] };

/**
 * Where we look for libkrun, in order, when MONOCORE_LIBKRUN_PATH is not set.
 * Bare names go through the dynamic loader (LD_LIBRARY_PATH, ld.so.cache);
 * absolute paths cover distributions whose cache does not list them.
 */
export function libkrunCandidates(platform: NodeJS.Platform = process.platform, arch: string = process.arch): string[] {
  if (platform === 'darwin') {
    return [
      '/opt/homebrew/lib/libkrun.dylib', // Homebrew on Apple silicon
      '/usr/local/lib/libkrun.dylib', // Homebrew on Intel, manual installs
      '/opt/homebrew/lib/libkrun.1.dylib',
      '/usr/local/lib/libkrun.1.dylib',
      'libkrun.dylib',
    ];
  }
  const multiarch = arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  const dirs = ['/usr/lib64', '/usr/local/lib64', '/usr/local/lib', `/usr/lib/${multiarch}`, '/usr/lib'];
  return ['libkrun.so.1', 'libkrun.so', ...dirs.flatMap((d) => [`${d}/libkrun.so.1`, `${d}/libkrun.so`])];
}

/**
 * Finds and loads libkrun. Never throws: returns the loaded library or the
 * reason it is unusable (what was tried and why each failed).
 */
export function findLibkrun(env: NodeJS.ProcessEnv = process.env): { lib: Libkrun } | { lib: null; reason: string; tried: string[] } {
  const override = env[LIBKRUN_PATH_ENV];
  if (override !== undefined && override !== '') {
    // An explicit choice is never silently replaced by another library.
    try {
      return { lib: Libkrun.load(override) };
    } catch (err) {
      const msg = err instanceof LibkrunError ? err.message : String(err);
      const hint = override.includes('/') && !existsSync(override) ? ' (file does not exist)' : '';
      return { lib: null, reason: `${LIBKRUN_PATH_ENV}=${override}: ${msg}${hint}`, tried: [override] };
    }
  }
  const tried: string[] = [];
  const failures: string[] = [];
  for (const candidate of libkrunCandidates()) {
    // Skip absolute paths that are not there: dlopen's message would only repeat it.
    if (candidate.includes('/') && !existsSync(candidate)) {
      tried.push(candidate);
      continue;
    }
    tried.push(candidate);
    try {
      return { lib: Libkrun.load(candidate) };
    } catch (err) {
      // A bare name the loader cannot find is the normal "not installed" case;
      // anything else (wrong architecture, missing symbols) is worth reporting.
      if (err instanceof LibkrunError && err.code === 'MC_VM_LIBKRUN_SYMBOL_MISSING') failures.push(err.message);
      else if (candidate.includes('/')) failures.push(err instanceof Error ? err.message : String(err));
    }
  }
  const install =
    process.platform === 'darwin'
      ? 'install it with `brew tap slp/krun && brew install libkrun`'
      : 'install libkrun (e.g. the distribution package `libkrun` on Fedora) or build it from https://github.com/containers/libkrun';
  const detail = failures.length > 0 ? `; ${failures.join('; ')}` : '';
  return {
    lib: null,
    reason: `libkrun not found (looked for ${tried.join(', ')})${detail}; ${install}, or set ${LIBKRUN_PATH_ENV} to its path`,
    tried,
  };
}

/** Whether libkrun can be loaded here, and if not, why. Never throws. */
export function probeLibkrun(env: NodeJS.ProcessEnv = process.env): LibkrunProbe {
  const found = findLibkrun(env);
  if (found.lib) return { available: true, path: found.lib.path, exported: found.lib.exported() };
  return { available: false, reason: found.reason, tried: found.tried };
}

/** Loads libkrun or throws MC_VM_LIBKRUN_NOT_FOUND with the probe's reason. */
export function loadLibkrun(env: NodeJS.ProcessEnv = process.env): Libkrun {
  const found = findLibkrun(env);
  if (found.lib) return found.lib;
  throw new LibkrunError('MC_VM_LIBKRUN_NOT_FOUND', found.reason, { tried: found.tried });
}
