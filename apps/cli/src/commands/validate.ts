import type { Command } from 'commander';
import { notImplemented } from '../not-implemented.js';

export function registerValidate(program: Command): void {
  notImplemented(program, 'validate', 'Validate a monocore.toml and print every problem', 2);
}
