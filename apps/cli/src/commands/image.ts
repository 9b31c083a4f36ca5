import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerImage(program: Command): void {
  notImplemented(program, 'image', 'Manage local images (ls, inspect, rm, prune, import)', 3);
}
