// The SDK's sandboxes against a real `monocore serve` (embedded Redis, a real
// worker booting QEMU/TCG microVMs from the loopback registry): create, get,
// list, exec (buffered, streamed, binary, stdin as text, bytes and a stream,
// timeout, abort), an interactive session with a PTY, files (binary round
// trip, modes, metadata, directories as tar both ways), kill, and the errors
// after it. One sandbox serves every check; the README's example program boots
// a second one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { MonocoreApiError, MonocoreClient, Sandbox, isExit, type ExecEvent } from '@monocore/client';
import { repoRoot, tempDir, testEnvWithKernel } from '../support/env.js';
import { startServe, type ServeProcess } from '../support/serve-process.js';

const env = testEnvWithKernel();
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
let serve: ServeProcess;
let client: MonocoreClient;
let sandbox: Sandbox;

before(async () => {
  serve = await startServe(env, { hostId: 'sdk-sb-host', prefix: 'sdk-sandbox-' });
  client = new MonocoreClient({ env: serve.clientEnv() });
  sandbox = await Sandbox.create({ image: env.image, ram: 256, env: { GREETING: 'hello' }, workdir: '/tmp' }, { client });
});

after(async () => {
  await client?.close();
  await serve?.stop();
});

test('create resolves once it accepts commands; get and list see it; an unknown id is MC_SANDBOX_NOT_FOUND (404)', async () => {
  assert.equal(sandbox.status, 'running');
  assert.match(sandbox.id, /^sb-[a-z0-9]{12}$/);
  assert.equal(sandbox.info.host, 'sdk-sb-host');
  assert.equal((await Sandbox.get(sandbox.id, { client })).info.image, env.image);
  assert.deepEqual((await Sandbox.list({ status: ['running'] }, { client })).map((s) => s.id), [sandbox.id]);
  const unknown = await client.getSandbox('sb-000000000000').catch((e: unknown) => e);
  assert.ok(unknown instanceof MonocoreApiError);
  assert.deepEqual([unknown.code, unknown.status], ['MC_SANDBOX_NOT_FOUND', 404]);
});

test('exec, buffered: defaults, env, cwd, stdin text and bytes, a string runs through sh -c, non-zero exits are results', async () => {
  const d = await sandbox.exec('echo "$GREETING $(pwd)"');
  assert.deepEqual([d.exit_code, d.stdout, d.stderr, d.timed_out], [0, 'hello /tmp\n', '', false]);
  const r = await sandbox.exec(['sh', '-c', 'cat; echo " $GREETING $(pwd)"; echo oops >&2; exit 3'], { stdin: 'in', env: { GREETING: 'hi' }, cwd: '/' });
  assert.deepEqual([r.exit_code, r.stdout, r.stderr], [3, 'in hi /\n', 'oops\n']);
  // Bytes on stdin: they travel as base64 and the text comes back as text.
  const bytes = await sandbox.exec(['sh', '-c', 'wc -c'], { stdin: Buffer.from([0, 255, 1, 2]) });
  assert.equal(bytes.stdout.trim(), '4');
  const b64 = await sandbox.exec(['sh', '-c', 'printf "\\377\\000"'], { encoding: 'base64' });
  assert.deepEqual(Buffer.from(b64.stdout, 'base64'), Buffer.from([0xff, 0]));
  const slow = await sandbox.exec(['sleep', '30'], { timeout_s: 1 });
  assert.deepEqual([slow.timed_out, slow.exit_code], [true, 137]);
  assert.equal((await sandbox.exec(['no-such-program'])).exit_code, 127);
});

test('execStream: chunks in order ending with the exit; binary; stdin as a stream; abort kills the command', async () => {
  const events: ExecEvent[] = [];
  for await (const e of sandbox.execStream(['sh', '-c', 'for i in 1 2 3; do echo out $i; echo err $i >&2; done; exit 5'])) events.push(e);
  const last = events.at(-1)!;
  assert.ok(isExit(last));
  assert.equal(last.exit_code, 5);
  const text = (s: string) => events.filter((e) => !isExit(e) && e.stream === s).map((e) => (e as { data: string }).data).join('');
  assert.equal(text('stdout'), 'out 1\nout 2\nout 3\n');
  assert.equal(text('stderr'), 'err 1\nerr 2\nerr 3\n');

  const big = await sandbox.execStream(['sh', '-c', 'head -c 3000000 /dev/zero | tr "\\0" "\\377"'], { binary: true }).collect();
  assert.equal(big.exit_code, 0);
  assert.equal(big.stdout.length, 3_000_000);
  assert.ok(big.stdout.every((b) => b === 0xff));

  // stdin from a stream (the WebSocket route): every byte through, in order.
  const payload = randomBytes(512 * 1024);
  const piped = await sandbox
    .execStream(['sh', '-c', 'sha256sum | cut -d" " -f1'], { stdin: Readable.from([payload.subarray(0, 100_000), payload.subarray(100_000)]) })
    .collect();
  assert.deepEqual([piped.exit_code, piped.stdout.trim()], [0, sha(payload)]);

  // Breaking out of the iteration closes the call: the command is killed in the guest.
  const marker = `/tmp/abort-${Date.now()}`;
  for await (const e of sandbox.execStream(['sh', '-c', `echo started; sleep 30; touch ${marker}`])) {
    if (!isExit(e)) break;
  }
  const ps = await sandbox.exec(['sh', '-c', 'ps -o args | grep -c "[s]leep 30" || true']);
  assert.equal(ps.stdout.trim(), '0', 'the aborted command is gone');
});

test('session: a PTY over the WebSocket, input, resize, exit code', async () => {
  const session = await sandbox.session(['sh'], { tty: { cols: 80, rows: 24 } });
  assert.ok(session.pid > 0);
  let out = '';
  let changed: () => void = () => undefined;
  const reading = (async () => {
    for await (const c of session.output()) {
      out += c.data.toString('utf8');
      changed();
    }
  })();
  // Waits for the output to match (each chunk wakes it), never on time.
  const until = async (re: RegExp): Promise<void> => {
    while (!re.test(out)) await new Promise<void>((resolve) => (changed = resolve));
  };
  session.write('tty; stty size\n');
  await until(/^24 80\r?$/m);
  session.resize(100, 40);
  session.write('stty size; exit 7\n');
  const exit = await session.exit;
  await reading;
  assert.equal(exit.exit_code, 7);
  assert.match(out, /\/dev\/pts\/\d+/);
  assert.match(out, /24 80/);
  assert.match(out, /40 100/);
});

test('files: a binary round trip with its checksum, mode, metadata, kind; directories as tar both ways', async (t) => {
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const w = await sandbox.files.write('/work/deep/data.bin', data, { mode: 0o600 });
  assert.deepEqual([w.path, w.size], ['/work/deep/data.bin', data.length]);
  assert.equal(sha(await sandbox.files.read('/work/deep/data.bin')), sha(data));
  const meta = await sandbox.files.readStream('/work/deep/data.bin');
  meta.stream.destroy();
  assert.deepEqual([meta.size, meta.mode], [data.length, 0o600]);
  await sandbox.files.write('/work/run.sh', Readable.from([Buffer.from('#!/bin/sh\necho ran\n')]), { mode: '755' });
  assert.equal((await sandbox.exec(['/work/run.sh'])).stdout, 'ran\n');
  assert.equal(await sandbox.files.readText('/work/run.sh'), '#!/bin/sh\necho ran\n');
  assert.equal(await sandbox.files.kind('/work/run.sh'), 'file');
  assert.equal(await sandbox.files.kind('/work/deep'), 'directory');
  assert.equal(await sandbox.files.kind('/work/nothing'), 'missing');
  const missing = await sandbox.files.read('/work/nothing').catch((e: unknown) => e);
  assert.ok(missing instanceof MonocoreApiError);
  assert.deepEqual([missing.code, missing.status], ['MC_AGENT_FILE_NOT_FOUND', 404]);
  const relative = await sandbox.files.read('work/x').catch((e: unknown) => e);
  assert.ok(relative instanceof MonocoreApiError);
  assert.deepEqual([relative.code, relative.status], ['MC_API_BAD_REQUEST', 400]);

  const local = tempDir('sdk-tar-');
  t.after(() => import('node:fs').then((fs) => fs.rmSync(local, { recursive: true, force: true })));
  mkdirSync(join(local, 'src', 'nested'), { recursive: true });
  writeFileSync(join(local, 'src', 'nested', 'tool.sh'), '#!/bin/sh\necho tool\n', { mode: 0o755 });
  writeFileSync(join(local, 'src', 'blob'), data.subarray(0, 100_000));
  await sandbox.files.uploadDir(join(local, 'src'), '/work/tree');
  assert.equal((await sandbox.exec(['/work/tree/nested/tool.sh'])).stdout, 'tool\n');
  const back = await sandbox.files.downloadDir('/work/tree', join(local, 'back'));
  assert.deepEqual(back.skipped, []);
  assert.equal(sha(readFileSync(join(local, 'back', 'blob'))), sha(data.subarray(0, 100_000)));
  assert.equal(statSync(join(local, 'back', 'nested', 'tool.sh')).mode & 0o777, 0o755);
});

test("the README's SDK example runs as printed", async (t) => {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const block = /<!-- sdk-example:start -->\s*```js\n([\s\S]*?)```\s*<!-- sdk-example:end -->/.exec(readme)?.[1];
  assert.ok(block, 'README.md has the SDK example between <!-- sdk-example:start --> and <!-- sdk-example:end -->');
  // Inside the repository, so `@monocore/client` resolves to the workspace package.
  const dir = tempDir('sdk-example-');
  t.after(() => import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true })));
  const file = join(dir, 'example.mjs');
  writeFileSync(file, block);
  const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [file], { env: serve.clientEnv({ IMAGE: env.image }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /^0 hello from /m);
  assert.match(run.stdout, /step 1\nstep 2\nstep 3\n/);
  assert.match(run.stdout, /^exit 0$/m);
  assert.match(run.stdout, /^sandbox sb-[a-z0-9]{12} deleted$/m);
  assert.match(run.stderr, /done/);
});

test('kill deletes it: status deleted, later calls are MC_SANDBOX_NOT_RUNNING (409), kill again is fine', async () => {
  const final = await sandbox.kill();
  assert.equal(final.status, 'deleted');
  const after = await sandbox.exec(['true']).catch((e: unknown) => e);
  assert.ok(after instanceof MonocoreApiError);
  assert.deepEqual([after.code, after.status], ['MC_SANDBOX_NOT_RUNNING', 409]);
  assert.equal((await sandbox.kill()).status, 'deleted');
  assert.equal((await sandbox.refresh()).status, 'deleted');
});
