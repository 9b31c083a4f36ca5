import type { ApiCommandOptions } from './command-options.js';

/**
 * The one place where API commands start the local daemon (issue: "a daemon
 * that starts itself"): the API client's `onUnreachable` hook (@monocore/client) for a command, or
 * undefined when the user named an API (--api, MONOCORE_API_URL), where an
 * unreachable API stays an error: a remote API is never replaced by a local one.
 * The daemon's code is loaded only when it is needed.
 */
export function daemonAutoStart(opts: ApiCommandOptions, env: NodeJS.ProcessEnv = process.env): (() => Promise<string>) | undefined {
  if (opts.api !== undefined || env.MONOCORE_API_URL) return undefined;
  return async () => {
    const { LocalDaemon } = await import('../daemon/local-daemon.js');
    const { url } = await new LocalDaemon().ensure({ say: (line) => process.stderr.write(`${line}\n`) });
    return url;
  };
}
