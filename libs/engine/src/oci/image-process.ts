import type { RuntimeConfig } from './runtime-config.js';

/**
 * What a caller sets over an image's config: a service's `command`/`args`/`envs`/
 * `workdir`, `monocore run`'s `--entrypoint`/COMMAND/`-e`/`-w`/`-u`, a sandbox's
 * `env`/`workdir`/`user`.
 */
export interface ProcessOverrides {
  /** Replaces the image Entrypoint; as in Docker, the image Cmd is then dropped unless `cmd` is given. */
  entrypoint?: readonly string[];
  /** Replaces the image Cmd. An empty list counts as not given (an absent `args`). */
  cmd?: readonly string[];
  /** Over the image Env: `KEY=value` strings or pairs; a later key replaces an earlier one in place. */
  env?: ReadonlyArray<string | readonly [string, string]>;
  /** Replaces the image WorkingDir. */
  workdir?: string;
  /** Replaces the image User (an OCI user string, resolved in the guest). */
  user?: string;
}

/** The guest process an image and its overrides make. */
export interface ImageProcess {
  /** Program and arguments; empty when neither the image nor the overrides name one (a sandbox needs none). */
  argv: string[];
  /** `KEY=value`, one per key, in first-appearance order. */
  env: string[];
  /** The working directory ("/" when nobody sets one). */
  workdir: string;
  /** Unset = root. */
  user?: string;
}

/**
 * The one home of Docker's image-config rules (`docker run`, and compose's
 * `entrypoint`/`command`), used by services, `monocore run` and sandboxes:
 *
 * - argv = (`entrypoint` ?? image Entrypoint) + (`cmd` if given, else the image
 *   Cmd — unless `entrypoint` was overridden, which drops the image Cmd);
 * - env = the image Env, then the overrides, a later key winning in place;
 * - workdir = `workdir` ?? image WorkingDir ?? "/"; user = `user` ?? image User.
 */
export function imageProcess(image: RuntimeConfig | undefined, overrides: ProcessOverrides = {}): ImageProcess {
  const cmdGiven = overrides.cmd !== undefined && overrides.cmd.length > 0;
  const entrypoint = overrides.entrypoint ?? image?.entrypoint ?? [];
  const cmd = cmdGiven ? overrides.cmd! : overrides.entrypoint !== undefined ? [] : (image?.cmd ?? []);
  const env = new Map<string, string>();
  const put = (key: string, value: string): void => {
    env.set(key, value);
  };
  for (const kv of image?.env ?? []) putKv(kv, put);
  for (const e of overrides.env ?? []) {
    if (typeof e === 'string') putKv(e, put);
    else put(e[0], e[1]);
  }
  const out: ImageProcess = {
    argv: [...entrypoint, ...cmd],
    env: [...env].map(([k, v]) => `${k}=${v}`),
    workdir: overrides.workdir ?? image?.workingDir ?? '/',
  };
  const user = overrides.user ?? image?.user;
  if (user !== undefined && user !== '') out.user = user;
  return out;
}

/** `KEY=value`; an entry without "=" (or with an empty key) is not an assignment and is ignored, as by execve's users. */
function putKv(kv: string, put: (key: string, value: string) => void): void {
  const i = kv.indexOf('=');
  if (i > 0) put(kv.slice(0, i), kv.slice(i + 1));
}
