// scripts/setup.sh outside a root shell. As root it runs the whole set-up (the README's first
// command; too long and too invasive for the suite); as another user it starts itself again
// through sudo, and where sudo is missing (a minimal machine) it must stop at once with a
// message saying how to run it, before touching anything. That last path is run here for
// real: a copy of the script, as the unprivileged uid 65534, with a PATH holding no sudo.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../support/env.js';

test('setup.sh as a non-root user on a machine without sudo: exit 1, says to use a root shell or install sudo, does nothing', (t) => {
  assert.equal(process.getuid?.(), 0, 'this test switches to uid 65534 and so must run as root (as the suite does)');
  // A directory uid 65534 can read (the checkout may sit under /root).
  const dir = mkdtempSync(join(tmpdir(), 'mc-setup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'scripts'));
  copyFileSync(join(repoRoot, 'scripts', 'setup.sh'), join(dir, 'scripts', 'setup.sh'));
  chmodSync(dir, 0o755);
  chmodSync(join(dir, 'scripts'), 0o755);
  const empty = join(dir, 'empty-path');
  mkdirSync(empty, { mode: 0o755 });
  // PATH names only an empty directory: no sudo (and no other command) can be found.
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'env', '-i', `PATH=${empty}`, `HOME=${dir}`, '/bin/bash', 'scripts/setup.sh'], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.error, undefined);
  assert.equal(r.status, 1, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.equal(r.stdout, '', 'nothing was started');
  assert.match(r.stderr, /needs root .*sudo is not installed/);
  assert.match(r.stderr, new RegExp(`run it in a root shell \\(e\\.g\\. su -c 'bash ${dir}/scripts/setup\\.sh'\\), or install sudo`));
});
