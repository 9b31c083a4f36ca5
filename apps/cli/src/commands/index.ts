import type { Command } from 'commander';
import { registerDoctor } from './doctor.js';
import { registerDown } from './down.js';
import { registerImage } from './image.js';
import { registerLogs } from './logs.js';
import { registerPull } from './pull.js';
import { registerRemove } from './remove.js';
import { registerRun } from './run.js';
import { registerServe } from './serve.js';
import { registerStatus } from './status.js';
import { registerUp } from './up.js';
import { registerValidate } from './validate.js';

/** Registers every subcommand, in the order --help lists them. */
export function registerCommands(program: Command): void {
  registerValidate(program);
  registerUp(program);
  registerDown(program);
  registerStatus(program);
  registerRemove(program);
  registerLogs(program);
  registerServe(program);
  registerRun(program);
  registerPull(program);
  registerImage(program);
  registerDoctor(program);
}
