// End to end: the built `monocore` CLI validating files, as a user runs it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const cli = join(repo, 'apps/cli/dist/main.js');

function monocore(args: string[], cwd = repo): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('the seed example is valid: exit 0, one line on stdout', () => {
  const r = monocore(['validate', '-f', 'test/fixtures/config/seed.toml']);
  assert.deepEqual(r, { code: 0, stdout: 'valid: 2 services, 1 group\n', stderr: '' });
  const j = monocore(['validate', '-f', 'test/fixtures/config/seed.toml', '--json']);
  assert.equal(j.code, 0);
  assert.deepEqual(JSON.parse(j.stdout), { valid: true, file: 'test/fixtures/config/seed.toml', services: 2, groups: 1 });
});

test('the shipped examples are valid', () => {
  for (const file of ['examples/monocore.toml', 'examples/full.toml']) {
    const r = monocore(['validate', '--file', file]);
    assert.equal(r.code, 0, `${file}: ${r.stderr}`);
    assert.match(r.stdout, /^valid: \d+ services?, \d+ groups?\n$/);
  }
});

test('a broken file: every problem on stderr as FILE:LINE:COL: path: message, exit 1', () => {
  const f = 'test/fixtures/config/broken.toml';
  const r = monocore(['validate', '-f', f]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.deepEqual(r.stderr.split('\n'), [
    `${f}:5:1: service[0].comand: unknown key "comand" (did you mean "command"?)`,
    `${f}:7:22: service[0].depends_on[1]: unknown service "db"`,
    `${f}:11:1: service[1].base: invalid image reference "Alpine": repository component "Alpine" must be lowercase`,
    `${f}:12:1: service[1].port: host port 8080 is already used by service "web" (service[0].port)`,
    `${f}:13:1: service[1].group: unknown group "backend"`,
    `${f}:14:19: service[1].envs[1]: env "bad-key=2": key "bad-key" must match [A-Za-z_][A-Za-z0-9_]*`,
    `${f}:15:12: service[1].volumes[0]: volume "/srv/../etc:/etc": host path "/srv/../etc" must not contain ".."`,
    `${f}:16:1: service[1].cpus: must be an integer in 1..64, got 0`,
    `${f}:17:15: service[1].depends_on[0]: dependency cycle: web -> api -> web`,
    `${f}: invalid: 9 problems`,
    '',
  ]);
});

test('--json on a broken file: the issues as JSON on stdout, exit 1', () => {
  const r = monocore(['validate', '-f', 'test/fixtures/config/broken.toml', '--json']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, '');
  const out = JSON.parse(r.stdout) as { valid: boolean; issues: { path: string; message: string; line: number; column: number }[] };
  assert.equal(out.valid, false);
  assert.equal(out.issues.length, 9);
  assert.deepEqual(out.issues[1], { path: 'service[0].depends_on[1]', message: 'unknown service "db"', line: 7, column: 22 });
});

test('a TOML syntax error points at its line and column', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-validate-'));
  try {
    writeFileSync(join(dir, 'bad.toml'), '[[service]]\nname = "a"\nargs = ["x",\n');
    const r = monocore(['validate', '-f', 'bad.toml'], dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^bad\.toml:4:1: TOML syntax error: .+\nbad\.toml: invalid: 1 problem\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without -f it reads ./monocore.toml', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-validate-'));
  try {
    const missing = monocore(['validate'], dir);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr, 'error: cannot read config file monocore.toml: no such file\n');
    copyFileSync(join(repo, 'test/fixtures/config/seed.toml'), join(dir, 'monocore.toml'));
    assert.deepEqual(monocore(['validate'], dir), { code: 0, stdout: 'valid: 2 services, 1 group\n', stderr: '' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('usage errors exit 2: missing file, a directory, an unknown flag', () => {
  const missing = monocore(['validate', '-f', '/nonexistent/monocore.toml']);
  assert.deepEqual(missing, { code: 2, stdout: '', stderr: 'error: cannot read config file /nonexistent/monocore.toml: no such file\n' });
  const missingJson = monocore(['validate', '-f', '/nonexistent/monocore.toml', '--json']);
  assert.equal(missingJson.code, 2);
  assert.equal((JSON.parse(missingJson.stdout) as { error: { code: string } }).error.code, 'MC_CONFIG_FILE_NOT_FOUND');
  const dir = monocore(['validate', '-f', 'test']);
  assert.deepEqual(dir, { code: 2, stdout: '', stderr: 'error: cannot read config file test: is a directory\n' });
  const flag = monocore(['validate', '--nope']);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /unknown option '--nope'/);
});

test('validate --help documents the flags', () => {
  const r = monocore(['validate', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /-f, --file <path>/);
  assert.match(r.stdout, /--json/);
});
