import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerDown(program: Command): void {
  notImplemented(program, 'down', 'Stop services in reverse dependency order', 5);
}
