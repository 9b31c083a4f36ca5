import type { Command } from 'commander';
import { registerStopCommand } from './down.js';

export function registerRemove(program: Command): void {
  registerStopCommand(program, 'remove', "Stop services if needed, then delete their writable layer and state");
}
