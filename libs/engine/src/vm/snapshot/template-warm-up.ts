import type { GuestAgent } from '../guest-agent.js';
import { DEFAULT_GUEST_PATH, type VmSpec } from '../vm-spec.js';

/** Files larger than this are not read in: the template's state file would carry them. */
const MAX_FILE_BYTES = 64 << 20;

/**
 * Run in the guest by the agent's own busybox: reads each program (looked up in PATH) and the
 * C library's loader and libc into the guest's page cache.
 */
const SCRIPT = [
  `warm() { [ -f "$1" ] && [ "$(stat -L -c %s "$1")" -le ${MAX_FILE_BYTES} ] && cat "$1" > /dev/null; }`,
  'for p in "$@"; do f=$(which "$p") && warm "$f"; done',
  'for f in /lib/ld-musl-*.so.1 /lib64/ld-linux-*.so.2 /lib/*-linux-gnu/libc.so.6 /usr/lib/*-linux-gnu/libc.so.6; do warm "$f"; done',
  'exit 0',
].join('\n');

/**
 * The programs worth having in a template's page cache: the command of the VM that saves it
 * (what `monocore run` and services of this image start) and the shell.
 */
export function warmUpPrograms(spec: Pick<VmSpec, 'command' | 'sandbox'>): string[] {
  const programs = spec.sandbox || !spec.command ? [] : [spec.command];
  return programs.includes('sh') ? programs : [...programs, 'sh'];
}

/**
 * Before a template is saved: read the programs the first command is likely to run into the
 * guest's page cache, so that the saved state carries them. Without it, every VM restored from
 * the template reads them again from its image device on its first exec, which under TCG
 * costs ~45 ms per MiB (a 2 MiB busybox: ~90 ms of a `monocore run`; bench/RESULTS.md "fast
 * start"). Reads only: nothing of the image's runs. Best effort: a failure costs only speed.
 */
export async function warmTemplatePageCache(agent: GuestAgent, programs: string[], env: readonly string[]): Promise<void> {
  const path = [...env].reverse().find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_GUEST_PATH;
  await agent.exec({
    argv: ['sh', '-c', SCRIPT, 'warm-up', ...programs],
    tool: 'busybox',
    user: '0:0',
    clearEnv: true,
    env: [`PATH=${path}`],
    cwd: '/',
    timeoutMs: 30_000,
    maxOutputBytes: 4096,
  });
}
