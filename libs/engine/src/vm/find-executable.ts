import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';

/** Absolute path of an executable found in PATH (or the path itself if it has a slash). */
export function findExecutable(cmd: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const ok = (p: string): boolean => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (cmd.includes('/')) return ok(cmd) ? cmd : undefined;
  for (const dir of (env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (dir && ok(join(dir, cmd))) return join(dir, cmd);
  }
  return undefined;
}

