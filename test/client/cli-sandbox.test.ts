// `monocore sandbox|exec|cp` end to end, as a user types them, against a real
// `monocore serve` (embedded Redis, real worker, QEMU/TCG microVMs): output
// for people and --json for machines, exit codes (the command's own, 125 when
// monocore fails, 1, 2). Boots: one sandbox, one service.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, testEnvWithKernel } from '../support/env.js';
import { CLI, startServe, type ServeProcess } from '../support/serve-process.js';

const env = testEnvWithKernel();
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
let serve: ServeProcess;
let work: string;
let id: string;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  out: Buffer;
}

function cli(args: string[], options: { stdin?: string | Buffer } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: serve.clientEnv(), cwd: work, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const buf = Buffer.concat(out);
      resolve({ code, stdout: buf.toString('utf8'), stderr, out: buf });
    });
    child.stdin.end(options.stdin ?? '');
  });
}

const show = (r: CliResult): string => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\nserve:\n${serve.log().slice(-2000)}`;

before(async () => {
  serve = await startServe(env, { hostId: 'cli-sb-host', prefix: 'cli-sandbox-' });
  work = tempDir('cli-sandbox-work-');
});

after(async () => {
  await serve?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('sandbox create prints the id; ls, inspect (people and --json)', async () => {
  const created = await cli(['sandbox', 'create', env.image, '--ram', '256', '-e', 'GREETING=hello', '--timeout', '30m', '--idle-timeout', '10m']);
  assert.equal(created.code, 0, show(created));
  id = created.stdout.trim();
  assert.match(id, /^sb-[a-z0-9]{12}$/);

  const ls = await cli(['sandbox', 'ls']);
  assert.equal(ls.code, 0, show(ls));
  assert.match(ls.stdout, /^SANDBOX\s+STATUS\s+IMAGE\s+HOST\s+CPUS\s+RAM\s+AGE\s+EXPIRES IN\s+REASON$/m);
  assert.match(ls.stdout, new RegExp(`^${id}\\s+running\\s+\\S+\\s+cli-sb-host\\s+1\\s+256M\\s+`, 'm'));
  assert.equal((await cli(['sandbox', 'ls', '-q'])).stdout, `${id}\n`);
  const lsJson = JSON.parse((await cli(['sandbox', 'ls', '--json', '--status', 'running'])).stdout) as { sandboxes: Array<{ id: string }> };
  assert.deepEqual(lsJson.sandboxes.map((s) => s.id), [id]);

  const inspect = await cli(['sandbox', 'inspect', id]);
  assert.match(inspect.stdout, /^status:\s+running$/m);
  assert.match(inspect.stdout, /^idle timeout:\s+600s \(then expired\)$/m);
  assert.match(inspect.stdout, /^boot:\s+(template|cold) \(/m);
  const info = JSON.parse((await cli(['sandbox', 'inspect', id, '--json'])).stdout) as { id: string; timeout_s: number; env: Record<string, string> };
  assert.deepEqual([info.id, info.timeout_s, info.env], [id, 1800, { GREETING: 'hello' }]);

  // Mistakes: usage 2 before any call; an image that does not exist: 1 with the registry's reason.
  const badRam = await cli(['sandbox', 'create', env.image, '--ram', '12']);
  assert.equal(badRam.code, 2, show(badRam));
  assert.match(badRam.stderr, /--ram: "12" must be an integer in 64\.\./);
  assert.equal((await cli(['sandbox', 'ls', '--status', 'sleeping'])).code, 2);
  const ghost = await cli(['sandbox', 'create', `${env.registry}/monocore-test/does-not-exist:latest`]);
  assert.equal(ghost.code, 1, show(ghost));
  assert.match(ghost.stderr, /does-not-exist/);
  const unknown = await cli(['sandbox', 'inspect', 'sb-000000000000']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /sb-000000000000/);
});

test("exec streams output and exits with the command's code; -e -w -u; -i; -t; --json; 125 when monocore fails", async () => {
  const r = await cli(['exec', id, '--', 'sh', '-c', 'echo "$GREETING"; echo err >&2; exit 3']);
  assert.deepEqual([r.code, r.stdout, r.stderr], [3, 'hello\n', 'err\n'], show(r));
  const opts = await cli(['exec', '-e', 'GREETING=hi', '-w', '/tmp', '-u', '1234', id, '--', 'sh', '-c', 'echo "$GREETING $(pwd) $(id -u)"']);
  assert.equal(opts.stdout, 'hi /tmp 1234\n', show(opts));

  // Bytes stay bytes, both ways.
  const payload = randomBytes(200_000);
  const echoed = await cli(['exec', '-i', id, '--', 'cat'], { stdin: payload });
  assert.equal(echoed.code, 0, show(echoed));
  assert.equal(sha(echoed.out), sha(payload));

  const tty = await cli(['exec', '-t', id, '--', 'sh', '-c', 'tty; echo to-stderr >&2']);
  assert.equal(tty.code, 0, show(tty));
  assert.match(tty.stdout, /\/dev\/pts\/\d+\r?\n/);
  assert.match(tty.stdout, /to-stderr/, 'a terminal merges stderr into stdout');

  const json = await cli(['exec', '--json', id, '--', 'sh', '-c', 'echo out; exit 4']);
  assert.equal(json.code, 4, show(json));
  const result = JSON.parse(json.stdout) as { exit_code: number; stdout: string; timed_out: boolean };
  assert.deepEqual([result.exit_code, result.stdout, result.timed_out], [4, 'out\n', false]);

  const slow = await cli(['exec', '--timeout', '1', id, '--', 'sleep', '30']);
  assert.equal(slow.code, 137, show(slow));
  assert.match(slow.stderr, /ran out of time/);
  assert.equal((await cli(['exec', id, '--', 'no-such-program'])).code, 127);

  const unknown = await cli(['exec', 'sb-000000000000', '--', 'true']);
  assert.equal(unknown.code, 125, show(unknown));
  assert.match(unknown.stderr, /^error: .*sb-000000000000/m);
  const unreachable = await cli(['exec', '--api', 'http://127.0.0.1:9', id, '--', 'true']);
  assert.equal(unreachable.code, 125);
  assert.match(unreachable.stderr, /cannot reach the monocore API/);
  assert.equal((await cli(['exec', '-t', '--json', id, '--', 'true'])).code, 2);
  assert.equal((await cli(['exec', '-w', 'relative', id, '--', 'true'])).code, 2);
});

test('cp: files and directories both ways, like docker cp; bad operands are usage errors', async () => {
  const data = randomBytes(1024 * 1024 + 3);
  writeFileSync(join(work, 'data.bin'), data);
  writeFileSync(join(work, 'tool.sh'), '#!/bin/sh\necho tool\n', { mode: 0o750 });
  const up = await cli(['cp', 'data.bin', `${id}:/work/in/data.bin`]);
  assert.equal(up.code, 0, show(up));
  assert.match(up.stdout, new RegExp(`copied file data\\.bin → ${id}:/work/in/data\\.bin \\(1\\.0 MiB\\)`));
  // Into an existing directory: the file keeps its name and its mode.
  const intoDir = await cli(['cp', 'tool.sh', `${id}:/work/in`, '--json']);
  assert.deepEqual(JSON.parse(intoDir.stdout), { source: 'tool.sh', destination: `${id}:/work/in/tool.sh`, type: 'file', bytes: 20 });
  assert.equal((await cli(['exec', id, '--', '/work/in/tool.sh'])).stdout, 'tool\n');
  assert.equal((await cli(['exec', id, '--', 'stat', '-c', '%a', '/work/in/tool.sh'])).stdout, '750\n');

  const down = await cli(['cp', `${id}:/work/in/data.bin`, 'back.bin']);
  assert.equal(down.code, 0, show(down));
  assert.equal(sha(readFileSync(join(work, 'back.bin'))), sha(data));

  // A directory: to a new path it becomes that path; into an existing one it keeps its name; /. copies the contents.
  mkdirSync(join(work, 'tree', 'sub'), { recursive: true });
  writeFileSync(join(work, 'tree', 'sub', 'f.txt'), 'in the tree\n');
  assert.equal((await cli(['cp', 'tree', `${id}:/work/tree`])).code, 0);
  assert.equal((await cli(['exec', id, '--', 'cat', '/work/tree/sub/f.txt'])).stdout, 'in the tree\n');
  assert.equal((await cli(['cp', 'tree', `${id}:/work`])).code, 0, 'into the existing /work: /work/tree again');
  assert.equal((await cli(['cp', `${id}:/work/tree`, 'fetched'])).code, 0);
  assert.equal(readFileSync(join(work, 'fetched', 'sub', 'f.txt'), 'utf8'), 'in the tree\n');
  assert.equal((await cli(['cp', `${id}:/work/tree`, 'fetched'])).code, 0);
  assert.ok(existsSync(join(work, 'fetched', 'tree', 'sub', 'f.txt')), 'into the existing local directory: fetched/tree');
  mkdirSync(join(work, 'contents'));
  assert.equal((await cli(['cp', `${id}:/work/tree/.`, 'contents'])).code, 0);
  assert.ok(statSync(join(work, 'contents', 'sub')).isDirectory(), 'SRC/. copies the contents');

  const missing = await cli(['cp', `${id}:/work/none`, 'x']);
  assert.equal(missing.code, 1, show(missing));
  assert.match(missing.stderr, /\/work\/none: no such file or directory/);
  assert.equal((await cli(['cp', 'a', 'b'])).code, 2);
  assert.equal((await cli(['cp', `${id}:relative`, 'b'])).code, 2);
  assert.equal((await cli(['cp', 'nope.bin', `${id}:/work/`])).code, 2);
});

test('a service from monocore.toml is an exec and cp target too', async () => {
  const cfg = join(work, 'monocore.toml');
  writeFileSync(cfg, `[[service]]\nname = "web"\nbase = "${env.image}"\nram = 192\ncommand = "/bin/sh"\nargs = ["-c", "echo up; exec sleep 600"]\nenvs = ["ROLE=web"]\n`);
  const up = await cli(['up', '-f', cfg]);
  assert.equal(up.code, 0, show(up));
  const r = await cli(['exec', 'web', '--', 'sh', '-c', 'echo "$ROLE"; exit 2']);
  assert.deepEqual([r.code, r.stdout], [2, 'web\n'], show(r));
  writeFileSync(join(work, 'svc.txt'), 'to the service\n');
  assert.equal((await cli(['cp', 'svc.txt', 'web:/tmp/svc.txt'])).code, 0);
  assert.equal((await cli(['exec', 'web', '--', 'cat', '/tmp/svc.txt'])).stdout, 'to the service\n');
  const unknown = await cli(['exec', 'no-such-service', '--', 'true']);
  assert.equal(unknown.code, 125, show(unknown));
  assert.equal((await cli(['remove'])).code, 0);
});

test('sandbox rm: deleted, then exec is 125; rm of an unknown id is 1 and the others are still removed', async () => {
  const rm = await cli(['sandbox', 'rm', 'sb-000000000000', id, '--json']);
  assert.equal(rm.code, 1, show(rm));
  const out = JSON.parse(rm.stdout) as { removed: Array<{ id: string; status: string }>; errors: Array<{ id: string; code: string }> };
  assert.deepEqual(out.removed.map((s) => [s.id, s.status]), [[id, 'deleted']]);
  assert.deepEqual(out.errors.map((e) => [e.id, e.code]), [['sb-000000000000', 'MC_SANDBOX_NOT_FOUND']]);
  const after = await cli(['exec', id, '--', 'true']);
  assert.equal(after.code, 125);
  assert.match(after.stderr, /deleted|not running/i);
  assert.match((await cli(['sandbox', 'ls'])).stdout, new RegExp(`^${id}\\s+deleted\\s`, 'm'));
});
