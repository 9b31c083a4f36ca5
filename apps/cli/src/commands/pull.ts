import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerPull(program: Command): void {
  notImplemented(program, 'pull', 'Pull an OCI image into the local store', 3);
}
