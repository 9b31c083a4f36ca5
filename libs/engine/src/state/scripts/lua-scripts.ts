import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The Lua sources live beside this file as `<op>-<nkeys>.lua` (BullMQ's
 * convention). tsc does not copy them to dist/, so they are read from the
 * package's src/ tree, which ships with the package.
 */
function load(file: string): string {
  const candidates = [
    new URL(`./${file}`, import.meta.url),
    new URL(`../../../src/state/scripts/${file}`, import.meta.url),
  ];
  for (const url of candidates) {
    try {
      return readFileSync(fileURLToPath(url), 'utf8');
    } catch {
      // try the next location
    }
  }
  throw new Error(`monocore: Lua script ${file} not found next to ${import.meta.url}`);
}

export interface LuaScript {
  name: string;
  numberOfKeys: number;
  lua: string;
}

function script(file: string): LuaScript {
  const m = /^(.+)-(\d+)\.lua$/.exec(file);
  if (!m) throw new Error(`bad Lua script name ${file}`);
  return { name: m[1]!, numberOfKeys: Number(m[2]), lua: load(file) };
}

export const LuaScripts = {
  transition: script('transition-2.lua'),
  acquireLease: script('acquire-lease-2.lua'),
  renewLease: script('renew-lease-2.lua'),
  releaseLease: script('release-lease-1.lua'),
  readAllServices: script('read-all-services-1.lua'),
  sandboxTransition: script('sandbox-transition-3.lua'),
} as const;
