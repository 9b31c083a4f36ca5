import { readFile } from 'node:fs/promises';
import { MonocoreError } from '../errors/index.js';
import type { MonocoreConfig } from './monocore-config-schema.js';
import { parseConfigToml } from './parse-config-toml.js';

/** Largest config file read (a monocore.toml is a few KiB; this keeps a wrong path to a disk image out). */
export const MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024;

/** Reads a config file as UTF-8 text; MC_CONFIG_FILE_NOT_FOUND when missing, unreadable or too large. */
export async function readConfigFile(path: string): Promise<string> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : String(code ?? err);
    throw new MonocoreError('MC_CONFIG_FILE_NOT_FOUND', `cannot read config file ${path}: ${why}`, { path, reason: why }, { cause: err });
  }
  if (buf.length > MAX_CONFIG_FILE_BYTES) {
    throw new MonocoreError('MC_CONFIG_FILE_NOT_FOUND', `cannot read config file ${path}: larger than ${MAX_CONFIG_FILE_BYTES} bytes`, { path, reason: 'too large' });
  }
  return buf.toString('utf8');
}

/** Reads, parses and validates a monocore.toml file. */
export async function loadConfigFile(path: string): Promise<MonocoreConfig> {
  return parseConfigToml(await readConfigFile(path), { source: path });
}
