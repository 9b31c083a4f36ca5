#!/usr/bin/env node
// The `monocore` (alias `mc`) command. Each subcommand lives in its own file
// under commands/ and registers itself on the program; this file only wires them.
import { Command } from 'commander';
import { VERSION } from '@monocore/engine/version';
import { endQuietlyOnClosedOutput } from './closed-output.js';
import { registerCommands } from './commands/index.js';
import { runCli } from './run-cli.js';

endQuietlyOnClosedOutput();

const program = new Command('monocore')
  .description('Secure microVM provisioning and orchestration for untrusted code')
  .version(VERSION, '-V, --version', 'print the monocore version')
  .showHelpAfterError('(run with --help for usage)');

await registerCommands(program, process.argv);
await runCli(program, process.argv);
