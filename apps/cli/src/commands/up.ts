import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerUp(program: Command): void {
  notImplemented(program, 'up', 'Start services from monocore.toml in dependency order', 5);
}
