/** Languages `run_code` runs, each with the interpreter the sandbox's image must have. */
export const RUN_CODE_LANGUAGES = ['python', 'node', 'sh'] as const;
export type RunCodeLanguage = (typeof RUN_CODE_LANGUAGES)[number];

const PLANS: Record<RunCodeLanguage, { ext: string; interpreter: string }> = {
  python: { ext: 'py', interpreter: 'python3' },
  node: { ext: 'mjs', interpreter: 'node' },
  sh: { ext: 'sh', interpreter: 'sh' },
};

/** Default images of fresh run_code sandboxes (`monocore mcp --python-image …` changes them). */
export const DEFAULT_RUN_CODE_IMAGES: Record<RunCodeLanguage, string> = {
  python: 'python:3.12-slim',
  node: 'node:20-slim',
  sh: 'busybox:stable',
};

/**
 * Where run_code writes the code and how it runs it: a file of its own under
 * /tmp/monocore-run (a sandbox may run several at once), run by the
 * interpreter directly (no shell, no quoting of the code).
 */
export function runCodePlan(language: RunCodeLanguage, id: string): { file: string; argv: string[] } {
  const plan = PLANS[language];
  const file = `/tmp/monocore-run/${id}.${plan.ext}`;
  return { file, argv: [plan.interpreter, file] };
}
