// The repository explains itself: every file that README, docs/ and the code's comments point a
// reader to must be in it. Checked in every tracked text file (and new files not yet added):
// - markdown links to local files (`[text](docs/VM.md#boot)`), resolved from the linking file;
// - paths from the repository's top-level directories (`docs/…`, `scripts/…`, `libs/…`, `apps/…`,
//   `bench/…`, `test/…`, `examples/…`, `deploy/…`, `.ci/…`), anywhere in the text;
// - bare document names (`NETWORK.md`): beside the file, at the root or in docs/;
// - bare source file names in documents and comments (`host-liveness.ts`, `vm-e2e.test.ts`):
//   some file of that name must exist (a `.js` name counts for its `.ts` source).
// Generated places (dist/, node_modules/, bench/out/, .monocore-test/), globs and templated
// paths (`*`, `{a,b}`, `<name>`, `${x}`) are not references to a file and are skipped.
// A document written before its code (a contract) lists the files still to come in one comment,
// `<!-- planned: path path … -->`; they may be named until they exist, and then the entry must go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, join, normalize } from 'node:path';
import { repoRoot } from '../support/env.js';

const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: repoRoot, encoding: 'utf8' })
  .split('\n')
  .filter((f) => f !== '' && existsSync(join(repoRoot, f)));
const fileSet = new Set(files);
const dirSet = new Set(files.flatMap((f) => f.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'))));
const basenames = new Set(files.map((f) => basename(f)));

const TEXT = /\.(md|ts|mjs|js|sh|lua|c|toml|ya?ml|json)$|(^|\/)(Dockerfile|run)$/;
const SELF = 'test/docs/references.test.ts'; // its samples are stale on purpose
const scanned = files.filter((f) => TEXT.test(f) && f !== 'package-lock.json' && f !== SELF && !f.startsWith('test/fixtures/'));

const TOP = ['docs', 'scripts', 'libs', 'apps', 'bench', 'test', 'examples', 'deploy', '.ci'];
const GENERATED = /(^|\/)(dist|node_modules|\.monocore-test)(\/|$)|^bench\/out(\/|$)/;
const TEMPLATED = /[*{}<>$]|\.\.\./;
/** Names that look like files and are not. */
const NOT_FILES = new Set(['Node.js']);

interface Problem {
  file: string;
  line: number;
  ref: string;
  why: string;
}

function lineOf(text: string, index: number): number {
  let n = 1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) n++;
  return n;
}

function isRepoPath(p: string): boolean {
  const clean = normalize(p).replace(/\/$/, '');
  // A module may be named without its extension (`test/support/env`).
  return fileSet.has(clean) || dirSet.has(clean) || ['.ts', '.mjs', '.js'].some((ext) => fileSet.has(clean + ext));
}

/** The comments of a source file (documents are read whole). Strings are blanked first, so `'//'` starts none. */
function commentsOf(file: string, text: string): string {
  const ext = extname(file);
  const keep = (re: RegExp): string => {
    // Keep each comment at its offset (line numbers stay right); everything else becomes spaces.
    const out = text.replace(/[^\n]/g, ' ').split('');
    for (const m of text.matchAll(re)) for (let i = 0; i < m[0].length; i++) out[m.index + i] = m[0][i]!;
    return out.join('');
  };
  if (['.ts', '.mjs', '.js', '.c'].includes(ext)) {
    const blanked = text.replace(/(['"`])(?:\\.|(?!\1)[^\\\n])*\1/g, (s) => s.replace(/[^\n]/g, ' '));
    const out = blanked.replace(/[^\n]/g, ' ').split('');
    for (const m of blanked.matchAll(/\/\/[^\n]*|\/\*[\s\S]*?\*\//g)) for (let i = 0; i < m[0].length; i++) out[m.index + i] = text[m.index + i]!;
    return out.join('');
  }
  if (ext === '.sh' || ext === '.toml' || ext === '.yml' || ext === '.yaml' || /(^|\/)(Dockerfile|run)$/.test(file)) return keep(/#[^\n]*/g);
  if (ext === '.lua') return keep(/--\[\[[\s\S]*?\]\]|--[^\n]*/g);
  return text;
}

function check(file: string, text: string): Problem[] {
  const isDoc = file.endsWith('.md');
  const prose = isDoc ? text : commentsOf(file, text);
  const problems: Problem[] = [];
  const planned = new Set<string>();
  if (isDoc) {
    for (const m of text.matchAll(/<!-- planned:([^>]*)-->/g)) {
      for (const p of m[1]!.trim().split(/\s+/)) {
        if (isRepoPath(p)) problems.push({ file, line: lineOf(text, m.index), ref: p, why: 'exists now: remove it from the planned list' });
        else planned.add(normalize(p).replace(/\/$/, ''));
      }
    }
  }
  const plannedNames = new Set([...planned].map((p) => basename(p)));
  const isPlanned = (p: string): boolean => planned.has(normalize(p).replace(/\/$/, ''));
  const seen = new Set<string>();
  const report = (index: number, ref: string, why: string): void => {
    const key = `${lineOf(text, index)}\0${basename(ref)}`; // a link target is also a bare name: once
    if (seen.has(key)) return;
    seen.add(key);
    problems.push({ file, line: lineOf(text, index), ref, why });
  };

  if (isDoc) {
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!.split('#')[0]!;
      if (target === '' || /^[a-z][a-z0-9+.-]*:/i.test(target) || TEMPLATED.test(target)) continue;
      const resolved = target.startsWith('/') ? target.slice(1) : join(dirname(file), target);
      if (!isRepoPath(resolved) && !isPlanned(resolved)) report(m.index, m[1]!, `link target ${resolved} is not in the repository`);
    }
  }

  // Paths from a top-level directory, in the whole text (code may name them in messages too).
  const top = new RegExp(`(?<![\\w./@-])((?:${TOP.map((d) => d.replace('.', '\\.')).join('|')})/[\\w./@-]*)`, 'g');
  for (const m of text.matchAll(top)) {
    const ref = m[1]!.replace(/[.]+$/, '');
    if (GENERATED.test(ref) || TEMPLATED.test(text.slice(m.index, m.index + ref.length + 1))) continue;
    if (!isRepoPath(ref) && !isPlanned(ref)) report(m.index, ref, 'no such file or directory in the repository');
  }

  // Bare document names: beside the file, at the root, or in docs/.
  for (const m of prose.matchAll(/(?<![\w./-])([\w-]+\.md)\b/g)) {
    const name = m[1]!;
    if (![join(dirname(file), name), name, `docs/${name}`].some((p) => fileSet.has(normalize(p)))) {
      report(m.index, name, 'no such document beside it, at the root or in docs/');
    }
  }

  // Bare source file names in documents and comments.
  for (const m of prose.matchAll(/(?<![\w./@$-])([\w][\w.-]*\.(?:ts|mjs|js|sh|lua|c))\b(?![\w/-])(?!\.\w)/g)) {
    const name = m[1]!;
    if (NOT_FILES.has(name)) continue;
    const candidates = [name, name.replace(/\.js$/, '.ts'), name.replace(/\.js$/, '.mjs')];
    if (!candidates.some((c) => basenames.has(c) || plannedNames.has(c))) report(m.index, name, 'no file of that name in the repository');
  }
  return problems;
}

test('every file that README, docs/ and code comments refer to exists in the repository', () => {
  assert.ok(scanned.length > 100, `scanned only ${scanned.length} files: is this a git checkout?`);
  const problems = scanned.flatMap((f) => check(f, readFileSync(join(repoRoot, f), 'utf8')));
  assert.deepEqual(
    problems.map((p) => `${p.file}:${p.line}: ${p.ref} (${p.why})`),
    [],
    'stale references: fix the reference, or bring what it explains into the repository',
  );
});

test('the reference check itself finds each kind of stale reference, and skips what is not one', () => {
  // Guards against a check that passes because it matches nothing.
  const doc = [
    'See [the VM notes](VM.md#boot), [gone](NOPE.md) and [a site](https://example.com/docs/NOPE.md).',
    'Run scripts/setup.sh, not scripts/nope.sh; built into dist/x.js and bench/out/x; all of test/*.ts.',
    'Facts: NETWORK.md, GONE.md; code: qemu-backend.ts, main.js, gone-file.ts. Not a file: ::ffff:a.b.c.d.',
  ].join('\n');
  assert.deepEqual(
    check('docs/sample.md', doc).map((p) => `${p.line}: ${p.ref}`),
    ['1: NOPE.md', '2: scripts/nope.sh', '3: GONE.md', '3: gone-file.ts'],
  );
  const contract = '<!-- planned: libs/engine/src/vm/later.ts docs/ERRORS.md -->\nThe client: libs/engine/src/vm/later.ts (later.ts), not libs/engine/src/vm/never.ts.';
  assert.deepEqual(
    check('docs/contract.md', contract).map((p) => `${p.line}: ${p.ref} (${p.why})`),
    ['1: docs/ERRORS.md (exists now: remove it from the planned list)', '2: libs/engine/src/vm/never.ts (no such file or directory in the repository)'],
  );
  const code = [
    "import { x } from './gone.js'; // see docs/ERRORS.md and FLOWS.md",
    "const url = 'http://h/x.md'; /* old-name.ts */",
  ].join('\n');
  assert.deepEqual(
    check('libs/engine/src/sample.ts', code).map((p) => `${p.line}: ${p.ref}`),
    ['1: FLOWS.md', '2: old-name.ts'],
    'in code only comments count for bare names (an import of ./gone.js is the compiler\'s business)',
  );
});
