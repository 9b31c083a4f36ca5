import { TomlError, parse } from 'smol-toml';
import type { ConfigIssue } from './config-issue.js';
import type { MonocoreConfig } from './monocore-config-schema.js';
import { SourcePositionIndex } from './source-positions.js';
import { checkConfig, configInvalidError, type ConfigCheckResult } from './validate-config.js';

export interface ParseTomlOptions {
  /** File name for messages (e.g. `monocore.toml`). */
  source?: string;
}

/** smol-toml's message is "Invalid TOML document: <why>\n\n<code block>"; keep <why>. */
function syntaxMessage(err: TomlError): string {
  const first = err.message.split('\n')[0] ?? err.message;
  return `TOML syntax error: ${first.replace(/^Invalid TOML document:\s*/, '')}`;
}

/** Like parseConfigToml but returns the issues instead of throwing. */
export function checkConfigToml(text: string): ConfigCheckResult {
  let value: unknown;
  try {
    value = parse(text);
  } catch (err) {
    if (err instanceof TomlError) {
      const issue: ConfigIssue = { path: '', message: syntaxMessage(err), line: err.line, column: err.column };
      return { ok: false, issues: [issue] };
    }
    throw err;
  }
  return checkConfig(value, { positions: new SourcePositionIndex(text) });
}

/**
 * Parses monocore.toml text and validates it. Returns the typed config with
 * defaults applied, or throws MC_CONFIG_INVALID listing every problem with its
 * path and, where it can be found, its line and column.
 */
export function parseConfigToml(text: string, options: ParseTomlOptions = {}): MonocoreConfig {
  const result = checkConfigToml(text);
  if (!result.ok) throw configInvalidError(result.issues, options.source);
  return result.config;
}
