import { CommanderError, type Command } from 'commander';
// The error class alone: the client's index loads undici, zod and every API schema (~0.3 s of start-up).
import { MonocoreApiError } from '@monocore/client/errors';
import { isMonocoreError } from '@monocore/engine/errors';
import { ExitCode } from './exit-codes.js';

/**
 * Parses argv and maps failures to exit codes: commander usage errors → 2,
 * MonocoreError and the API's MonocoreApiError → 2 for MC_USAGE, else 1
 * (a command may choose its own code first), anything else → 70.
 */
export async function runCli(program: Command, argv: string[]): Promise<void> {
  // Subcommands copy settings when created, before this runs: override them too, or
  // commander exits 1 itself on a subcommand's unknown option instead of our 2.
  const override = (cmd: Command): void => {
    cmd.exitOverride();
    cmd.commands.forEach(override);
  };
  override(program);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here with exit code 0.
      process.exitCode = err.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
      return;
    }
    if (isMonocoreError(err) || err instanceof MonocoreApiError) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = err.code === 'MC_USAGE' ? ExitCode.Usage : ExitCode.Failure;
      return;
    }
    process.stderr.write(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = ExitCode.Internal;
  }
}
