import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerLogs(program: Command): void {
  notImplemented(program, 'logs', "Show a service's logs", 5);
}
