import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerStatus(program: Command): void {
  notImplemented(program, 'status', 'Show the status of every service', 5);
}
