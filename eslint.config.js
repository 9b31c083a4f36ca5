// One linter for the workspace: typescript-eslint's recommended rules on top of
// ESLint's, plus the few project rules below.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'bench/out/**', '.monocore-test/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  {
    // Command-line entry points, scripts, tests and benchmarks may print.
    files: ['apps/cli/**', '**/*.test.ts', 'test/**', 'bench/**', 'scripts/**', '**/main.ts'],
    rules: { 'no-console': 'off' },
  },
);
