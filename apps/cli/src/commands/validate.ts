import type { Command } from 'commander';
import { checkConfigToml, formatIssue, readConfigFile, type ConfigIssue } from '@monocore/engine/config';
import { isMonocoreError } from '@monocore/engine/errors';
import { ExitCode } from '../exit-codes.js';

interface ValidateOptions {
  file: string;
  json?: boolean;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** `FILE:LINE:COL: path: message` — the shape editors and CI annotators parse. */
export function formatIssueLine(file: string, issue: ConfigIssue): string {
  const where = issue.line !== undefined ? `${file}:${issue.line}:${issue.column ?? 1}` : file;
  return `${where}: ${formatIssue(issue)}`;
}

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('Validate a monocore.toml and print every problem (exit 0 valid, 1 invalid, 2 usage/missing file)')
    .option('-f, --file <path>', 'configuration file', 'monocore.toml')
    .option('--json', 'print the result as JSON on stdout')
    // Subcommands do not inherit the program's exitOverride (it is set after they are
    // registered), so without this commander exits 1 on a bad flag instead of throwing
    // to runCli, which maps usage errors to exit 2.
    .exitOverride()
    .action(async (opts: ValidateOptions) => {
      const file = opts.file;
      let text: string;
      try {
        text = await readConfigFile(file);
      } catch (err) {
        if (!isMonocoreError(err, 'MC_CONFIG_FILE_NOT_FOUND')) throw err;
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ valid: false, file, error: err.toJSON() })}\n`);
        } else {
          process.stderr.write(`error: ${err.message}\n`);
        }
        process.exitCode = ExitCode.Usage;
        return;
      }

      const result = checkConfigToml(text);
      if (result.ok) {
        const services = result.config.service.length;
        const groups = result.config.group.length;
        if (opts.json) process.stdout.write(`${JSON.stringify({ valid: true, file, services, groups })}\n`);
        else process.stdout.write(`valid: ${plural(services, 'service')}, ${plural(groups, 'group')}\n`);
        process.exitCode = ExitCode.Ok;
        return;
      }

      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ valid: false, file, issues: result.issues })}\n`);
      } else {
        const lines = result.issues.map((issue) => formatIssueLine(file, issue));
        lines.push(`${file}: invalid: ${plural(result.issues.length, 'problem')}`);
        process.stderr.write(`${lines.join('\n')}\n`);
      }
      process.exitCode = ExitCode.Failure;
    });
}
