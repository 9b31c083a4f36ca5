import { fileURLToPath } from 'node:url';

/** Absolute path of the compiled krun-child.js, to start with `node <path> <config.json>`. */
export function krunChildEntry(): string {
  return fileURLToPath(new URL('./krun-child.js', import.meta.url));
}
