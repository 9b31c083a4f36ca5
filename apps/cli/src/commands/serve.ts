import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerServe(program: Command): void {
  notImplemented(program, 'serve', 'Run the API server, puller and worker in one process', 5);
}
