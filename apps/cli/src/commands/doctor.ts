import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerDoctor(program: Command): void {
  notImplemented(program, 'doctor', 'Report which hypervisor backends work on this host', 4);
}
