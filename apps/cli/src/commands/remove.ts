import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerRemove(program: Command): void {
  notImplemented(program, 'remove', 'Stop and delete services and their writable layers', 5);
}
