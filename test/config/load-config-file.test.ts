import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMonocoreError, loadConfigFile, type ConfigIssue } from '@monocore/engine';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

test('loadConfigFile reads, parses and validates a file', async () => {
  const cfg = await loadConfigFile(join(repo, 'examples/monocore.toml'));
  assert.deepEqual(cfg.service.map((s) => s.name), ['sh-counter', 'date-counter']);
});

test('loadConfigFile: a missing file or a directory is MC_CONFIG_FILE_NOT_FOUND naming the path', async () => {
  await assert.rejects(loadConfigFile('/nonexistent/monocore.toml'), {
    code: 'MC_CONFIG_FILE_NOT_FOUND',
    message: 'cannot read config file /nonexistent/monocore.toml: no such file',
  });
  await assert.rejects(loadConfigFile(repo), { code: 'MC_CONFIG_FILE_NOT_FOUND', message: `cannot read config file ${repo}: is a directory` });
});

test('loadConfigFile: an unreadable file is MC_CONFIG_FILE_NOT_FOUND (as non-root)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-load-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const file = join(dir, 'monocore.toml');
  writeFileSync(file, '[[service]]\nname = "a"\n');
  chmodSync(file, 0o000);
  // Root reads any file, so the check runs in a child as an unprivileged user (nobody) when we are root.
  const engine = new URL('../../../libs/engine/dist/index.js', import.meta.url).href;
  const script = `import(${JSON.stringify(engine)}).then((e) => e.loadConfigFile(${JSON.stringify(file)})).then(
    () => { console.log(JSON.stringify({ loaded: true, uid: process.getuid() })); },
    (err) => { console.log(JSON.stringify({ code: err.code, message: err.message, uid: process.getuid() })); })`;
  const asRoot = process.getuid?.() === 0;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
  });
  const r = JSON.parse(out) as { code?: string; message?: string; uid: number };
  assert.notEqual(r.uid, 0, 'the check ran as a non-root user');
  assert.deepEqual({ code: r.code, message: r.message }, {
    code: 'MC_CONFIG_FILE_NOT_FOUND',
    message: `cannot read config file ${file}: permission denied`,
  });
});

test('loadConfigFile: an invalid file names the file and every issue with its line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-load-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'monocore.toml');
  writeFileSync(file, '[[service]]\nname = "a"\nram = 1\n\n[[service]]\nname = "a"\n');
  await assert.rejects(loadConfigFile(file), (err: unknown) => {
    assert.ok(isMonocoreError(err, 'MC_CONFIG_INVALID'));
    assert.equal(
      err.message,
      `invalid configuration in ${file}: 2 problems\n` +
        '  line 3: service[0].ram: must be an integer in 64..1048576, got 1\n' +
        '  line 6: service[1].name: duplicate service name "a" (first defined at service[0])',
    );
    assert.deepEqual(err.details.issues as ConfigIssue[], [
      { path: 'service[0].ram', message: 'must be an integer in 64..1048576, got 1', line: 3, column: 1 },
      { path: 'service[1].name', message: 'duplicate service name "a" (first defined at service[0])', line: 6, column: 1 },
    ]);
    return true;
  });
});
