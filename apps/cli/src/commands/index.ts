import type { Command } from 'commander';

type Register = (program: Command) => void;

/**
 * Every subcommand, in the order --help lists them, each loaded only when it is
 * needed: `monocore validate` must not pay for BullMQ, undici and QEMU probing
 * (importing everything costs about a second of start-up on a small machine).
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  validate: async () => (await import('./validate.js')).registerValidate,
  up: async () => (await import('./up.js')).registerUp,
  down: async () => (await import('./down.js')).registerDown,
  status: async () => (await import('./status.js')).registerStatus,
  hosts: async () => (await import('./hosts.js')).registerHosts,
  remove: async () => (await import('./remove.js')).registerRemove,
  logs: async () => (await import('./logs.js')).registerLogs,
  sandbox: async () => (await import('./sandbox.js')).registerSandbox,
  exec: async () => (await import('./exec.js')).registerExec,
  cp: async () => (await import('./cp.js')).registerCp,
  mcp: async () => (await import('./mcp.js')).registerMcp,
  serve: async () => (await import('./serve.js')).registerServe,
  daemon: async () => (await import('./daemon.js')).registerDaemon,
  run: async () => (await import('./run.js')).registerRun,
  pull: async () => (await import('./pull.js')).registerPull,
  image: async () => (await import('./image.js')).registerImage,
  doctor: async () => (await import('./doctor.js')).registerDoctor,
};

/**
 * Registers the subcommand named in argv, or all of them when none is named
 * (top-level --help, a typo that needs "did you mean", `help <command>`), or
 * none for --version.
 */
export async function registerCommands(program: Command, argv: string[]): Promise<void> {
  const first = argv.slice(2).find((a) => !a.startsWith('-'));
  if (first === undefined && argv.some((a) => a === '-V' || a === '--version')) return;
  const named = first !== undefined && first !== 'help' ? COMMANDS[first] : undefined;
  const loaders = named ? [named] : Object.values(COMMANDS);
  for (const register of await Promise.all(loaders.map((load) => load()))) register(program);
}
