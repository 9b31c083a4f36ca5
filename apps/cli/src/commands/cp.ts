import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { chmod, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, posix, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { MonocoreApiError, SANDBOX_ID_PATTERN, type ExecTarget } from '@monocore/client';
import { MonocoreError } from '@monocore/engine/errors';
import { clientFor, withApiOption, type ApiCommandOptions } from '../api/command-options.js';
import { resolveTarget } from './exec.js';

/** `TARGET:/path` (a sandbox id or a service name, then an absolute guest path), or a local path. */
export type CpOperand = { kind: 'remote'; target: string; path: string } | { kind: 'local'; path: string };

const SERVICE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Like `docker cp`: `NAME:PATH` is in a sandbox or service when NAME is a
 * sandbox id or a service name (no `/`), else the argument is a local path
 * (write `./a:b` for a local file whose name has a colon).
 */
export function parseCpOperand(arg: string): CpOperand {
  const colon = arg.indexOf(':');
  const name = colon > 0 ? arg.slice(0, colon) : '';
  if (colon > 0 && !name.includes('/') && (SANDBOX_ID_PATTERN.test(name) || SERVICE_NAME.test(name))) {
    const path = arg.slice(colon + 1);
    if (!path.startsWith('/')) throw new MonocoreError('MC_USAGE', `${arg}: the path in ${name} must be absolute (${name}:/path)`);
    return { kind: 'remote', target: name, path };
  }
  return { kind: 'local', path: arg };
}

interface CpResult {
  source: string;
  destination: string;
  type: 'file' | 'directory';
  bytes?: number;
  skipped?: string[];
}

export function registerCp(program: Command): void {
  withApiOption(
    program
      .command('cp')
      .description('Copy files and directories between this machine and a sandbox or service (like `docker cp`)')
      .argument('<src>', 'a local path, or TARGET:/path (TARGET: a sandbox id or a service name)')
      .argument('<dst>', 'a local path, or TARGET:/path')
      .option('--json', 'print JSON ({source, destination, type, bytes})')
      .addHelpText(
        'after',
        '\nExamples:\n  monocore cp ./app.py sb-k3v9x0q2m7ta:/work/         # into an existing directory: /work/app.py\n' +
          '  monocore cp ./src sb-k3v9x0q2m7ta:/work/src          # a directory (created if missing)\n' +
          '  monocore cp sb-k3v9x0q2m7ta:/work/out ./out           # and back\n' +
          '\nA directory goes as a tar stream; SRC ending in /. copies its contents rather than the directory itself.\n' +
          'Files keep their permission bits. What comes out of a guest never lands outside DST (no absolute or ..\n' +
          'names, nothing written through links; devices, FIFOs and hard links are skipped).',
      ),
  ).action(async (src: string, dst: string, opts: ApiCommandOptions & { json?: boolean }) => {
    const from = parseCpOperand(src);
    const to = parseCpOperand(dst);
    if ((from.kind === 'remote') === (to.kind === 'remote')) {
      throw new MonocoreError('MC_USAGE', 'one of SRC and DST must be TARGET:/path (a sandbox id or a service name) and the other a local path');
    }
    const client = clientFor(opts);
    try {
      const result =
        from.kind === 'local' && to.kind === 'remote'
          ? await upload(await resolveTarget(client, to.target), from.path, to)
          : from.kind === 'remote' && to.kind === 'local'
            ? await download(await resolveTarget(client, from.target), from, to.path)
            : undefined;
      if (!result) return;
      if (opts.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      else {
        const size = result.bytes !== undefined ? ` (${formatBytes(result.bytes)})` : '';
        process.stdout.write(`copied ${result.type} ${result.source} → ${result.destination}${size}\n`);
        for (const s of result.skipped ?? []) process.stderr.write(`skipped ${s}\n`);
      }
    } finally {
      await client.close();
    }
  });
}

const formatBytes = (n: number): string =>
  n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : n < 1 << 30 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / (1 << 30)).toFixed(2)} GiB`;

async function upload(target: ExecTarget, localPath: string, to: { target: string; path: string }): Promise<CpResult> {
  if (!existsSync(localPath)) throw new MonocoreError('MC_USAGE', `${localPath}: no such file or directory`);
  const st = statSync(localPath);
  const there = await target.files.kind(to.path);
  const name = `${to.target}:`;
  if (st.isDirectory()) {
    if (there === 'file' || there === 'other') throw new MonocoreError('MC_USAGE', `cannot copy the directory ${localPath} onto ${name}${to.path}, which is not a directory`);
    const contentsOnly = /\/\.$/.test(localPath);
    const dest = there === 'directory' && !contentsOnly ? posix.join(to.path, basename(resolve(localPath))) : to.path;
    const written = await target.files.uploadDir(localPath, dest);
    return { source: localPath, destination: `${name}${dest}`, type: 'directory', bytes: written.size };
  }
  if (!st.isFile()) throw new MonocoreError('MC_USAGE', `${localPath}: only regular files and directories can be copied`);
  if (there === 'missing' && to.path.endsWith('/')) throw new MonocoreError('MC_USAGE', `${name}${to.path}: no such directory`);
  const dest = there === 'directory' ? posix.join(to.path, basename(localPath)) : to.path;
  const written = await target.files.write(dest, createReadStream(localPath), { mode: st.mode & 0o777 });
  return { source: localPath, destination: `${name}${dest}`, type: 'file', bytes: written.size };
}

async function download(target: ExecTarget, from: { target: string; path: string }, localPath: string): Promise<CpResult> {
  const name = `${from.target}:`;
  const guestPath = from.path.replace(/\/\.$/, '') || '/';
  const there = await target.files.kind(guestPath);
  if (there === 'missing') throw new MonocoreApiError('MC_AGENT_FILE_NOT_FOUND', `${name}${from.path}: no such file or directory`, { status: 404 });
  if (there === 'other') throw new MonocoreError('MC_USAGE', `${name}${from.path}: only regular files and directories can be copied`);
  const here = existsSync(localPath) ? (statSync(localPath).isDirectory() ? 'directory' : 'file') : 'missing';
  if (there === 'directory') {
    if (here === 'file') throw new MonocoreError('MC_USAGE', `cannot copy the directory ${name}${from.path} onto ${localPath}, which is not a directory`);
    const contentsOnly = /\/\.$/.test(from.path);
    const dest = here === 'directory' && !contentsOnly ? join(localPath, posix.basename(guestPath)) : localPath;
    const { skipped } = await target.files.downloadDir(guestPath, dest);
    return { source: `${name}${from.path}`, destination: dest, type: 'directory', ...(skipped.length > 0 ? { skipped } : {}) };
  }
  if (here === 'missing' && localPath.endsWith('/')) throw new MonocoreError('MC_USAGE', `${localPath}: no such directory`);
  const dest = here === 'directory' ? join(localPath, posix.basename(guestPath)) : localPath;
  // Into a temporary file next to the destination, renamed when complete: never half a file under its name.
  const temp = join(dirname(dest), `.${basename(dest)}.mc-${randomBytes(4).toString('hex')}`);
  const file = await target.files.readStream(guestPath);
  let bytes = 0;
  const count = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      bytes += chunk.length;
      yield chunk;
    }
  };
  try {
    await pipeline(file.stream, count, createWriteStream(temp, { mode: 0o600 }));
    await chmod(temp, (file.mode ?? 0o644) & 0o777);
    await rename(temp, dest);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return { source: `${name}${from.path}`, destination: dest, type: 'file', bytes };
}
