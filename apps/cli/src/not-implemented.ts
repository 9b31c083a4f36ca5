import type { Command } from 'commander';
import { ExitCode } from './exit-codes.js';

/** Registers a command that exists in the interface but says honestly it is not built yet. */
export function notImplemented(program: Command, name: string, description: string, issue: number): void {
  program
    .command(name)
    .description(`${description} (not implemented yet: issue #${issue})`)
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      process.stderr.write(`monocore ${name.split(' ')[0]}: not implemented yet (tracked in issue #${issue})\n`);
      process.exitCode = ExitCode.NotImplemented;
    });
}
