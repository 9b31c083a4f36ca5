import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerRun(program: Command): void {
  notImplemented(program, 'run', 'Run one command in a throwaway microVM', 4);
}
