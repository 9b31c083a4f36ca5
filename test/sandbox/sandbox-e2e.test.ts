/**
 * Sandboxes end to end: the real API (REST), a real worker booting QEMU
 * microVMs under TCG, real Redis and the loopback registry. One busybox
 * sandbox serves most checks (exec with stdin/env/cwd/user/exit codes/signals,
 * 5 concurrent execs, state kept between execs, streaming, an interactive
 * WebSocket session with a PTY, binary and tar round trips, limits, timeouts,
 * delete); a few more boots cover lifetimes, a failed pull and a service.
 * Boots: 1 + 2 (lifetimes) + 1 (python image) + 1 (service).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync, readlinkSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { Sandbox } from '@monocore/api-schemas';
import { Keys, RELAY_WINDOW_BYTES, sandboxSubject } from '@monocore/engine';
import { TEST_REDIS_DBS, tempDir } from '../support/env.js';
import { until, vmEnv } from '../orchestration/support.js';
import { call, createSandbox, exec, sandboxVms, startStack, type Stack } from './sandbox-fixtures.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const UPLOAD_LIMIT = 8 << 20;

describe('a busybox sandbox through the REST API (TCG)', () => {
  let stack: Stack;
  let sb: Sandbox;
  let target: string;

  before(async () => {
    stack = await startStack(TEST_REDIS_DBS['sandbox/sandbox-e2e'], { api: { maxUploadBytes: UPLOAD_LIMIT } });
    sb = await createSandbox(stack.url, { image: vmEnv().image, ram: 256, env: { GREETING: 'hello' }, workdir: '/tmp' });
    target = `/sandboxes/${sb.id}`;
  });
  after(async () => {
    await stack?.close();
  });

  test('create answers 201 once it accepts commands; GET and the list show it', async () => {
    assert.equal(sb.status, 'running');
    assert.equal(sb.host, 'sb1');
    assert.match(sb.id, /^sb-[a-z0-9]{12}$/);
    assert.ok(sb.started_at && sb.image_digest?.startsWith('sha256:'));
    assert.equal((await call<Sandbox>(stack.url, 'GET', target)).body.status, 'running');
    const list = await call<{ sandboxes: Sandbox[] }>(stack.url, 'GET', '/sandboxes?status=running');
    assert.deepEqual(list.body.sandboxes.map((s) => s.id), [sb.id]);
    const unknown = await call<{ code: string }>(stack.url, 'GET', '/sandboxes/sb-000000000000');
    assert.deepEqual([unknown.status, unknown.body.code], [404, 'MC_SANDBOX_NOT_FOUND']);
    assert.equal((await call(stack.url, 'GET', '/sandboxes/nope')).status, 400);
  });

  test('the worker keeps a spare of the sandbox\'s shape, GET /hosts shows it, and the next create adopts it', async () => {
    // The first sandbox of the image booted cold and saved the template; the spare follows it.
    // /hosts counts spares once loaded (ready to adopt), as of the worker's last heartbeat.
    type Host = { id: string; spares?: { count: number; ramMib: number } };
    const held = await until('GET /hosts to show the spare', async () => {
      const h = (await call<{ hosts: Host[] }>(stack.url, 'GET', '/hosts')).body.hosts.find((x) => x.id === 'sb1');
      return h?.spares?.count === 1 ? h.spares : undefined;
    }, 60_000, 200);
    assert.equal(held.ramMib, 256, 'its guest RAM, resident while it waits');
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    assert.match(metrics, /^monocore_host_spares\{host="sb1"\} 1$/m);
    assert.match(metrics, new RegExp(`^monocore_host_spare_memory_bytes\\{host="sb1"\\} ${256 * 1024 * 1024}$`, 'm'));
    const next = await createSandbox(stack.url, { image: vmEnv().image, ram: 256 });
    assert.match(next.boot?.reason ?? '', /restored ahead of this start \(spare-[0-9a-f]+/);
    const out = await exec(stack.url, `/sandboxes/${next.id}`, { cmd: ['hostname'] });
    assert.equal(out.stdout, `${next.id}\n`);
    assert.equal(sandboxVms(next.id, stack.homes).length, 1, 'its QEMU is found by its pid record');
    assert.equal((await call(stack.url, 'DELETE', `/sandboxes/${next.id}`)).status, 200);
    assert.equal(sandboxVms(next.id, stack.homes).length, 0);
  });

  test('exec: defaults from the sandbox, stdin, env, cwd, user, exit codes, signals, 127', async () => {
    const d = await exec(stack.url, target, { cmd: ['sh', '-c', 'echo "$GREETING $(pwd) $(id -u)"'] });
    assert.deepEqual([d.exit_code, d.stdout, d.stderr, d.timed_out, d.signal], [0, 'hello /tmp 0\n', '', false, null]);
    const r = await exec(stack.url, target, {
      cmd: ['sh', '-c', 'cat; echo "$GREETING $(pwd) $(id -u)"; echo oops >&2; exit 4'],
      stdin: 'in:',
      env: { GREETING: 'hi' },
      cwd: '/',
      user: '1234:5678',
    });
    assert.deepEqual([r.exit_code, r.stdout, r.stderr], [4, 'in:hi / 1234\n', 'oops\n']);
    const killed = await exec(stack.url, target, { cmd: ['sh', '-c', 'kill -TERM $$'] });
    assert.deepEqual([killed.exit_code, killed.signal], [143, 15]);
    const missing = await exec(stack.url, target, { cmd: ['no-such-program'] });
    assert.equal(missing.exit_code, 127);
    assert.ok(missing.spawn_error);
    const bin = await exec(stack.url, target, { cmd: ['sh', '-c', 'printf "\\377\\000\\001"'], encoding: 'base64' });
    assert.deepEqual(Buffer.from(bin.stdout, 'base64'), Buffer.from([0xff, 0, 1]));
    const bad = await call<{ code: string; issues: Array<{ path: string }> }>(stack.url, 'POST', `${target}/exec`, { cmd: [], cwd: 'rel' });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.body.issues.map((i) => i.path).sort(), ['body.cmd', 'body.cwd']);
  });

  test('5 concurrent execs; state (files, background processes) kept between execs', async () => {
    const t0 = Date.now();
    const rs = await Promise.all([1, 2, 3, 4, 5].map((i) => exec(stack.url, target, { cmd: ['sh', '-c', `sleep 1; echo ${i} > /tmp/c${i}; echo ${i}`] })));
    assert.deepEqual(rs.map((r) => r.stdout), ['1\n', '2\n', '3\n', '4\n', '5\n']);
    assert.ok(Date.now() - t0 < 5 * 1000 + 4000, 'they ran side by side');
    const cat = await exec(stack.url, target, { cmd: ['sh', '-c', 'cat /tmp/c1 /tmp/c2 /tmp/c3 /tmp/c4 /tmp/c5'] });
    assert.equal(cat.stdout, '1\n2\n3\n4\n5\n');
    const bg = await exec(stack.url, target, { cmd: ['sh', '-c', 'sleep 600 >/dev/null 2>&1 & echo $!'] });
    const pid = bg.stdout.trim();
    const later = await exec(stack.url, target, { cmd: ['sh', '-c', `cat /proc/${pid}/cmdline | tr '\\0' ' '`] });
    assert.equal(later.stdout.trim(), 'sleep 600', 'the background process outlived its exec');
  });

  test('exec timeout kills the whole process tree and answers timed_out', async () => {
    const t = await exec(stack.url, target, { cmd: ['sh', '-c', 'sleep 300 & echo $! > /tmp/child; sleep 300'], timeout_s: 1 });
    assert.deepEqual([t.timed_out, t.exit_code], [true, 137]);
    const child = (await exec(stack.url, target, { cmd: ['cat', '/tmp/child'] })).stdout.trim();
    const gone = await exec(stack.url, target, { cmd: ['sh', '-c', `test -e /proc/${child} && cat /proc/${child}/stat || echo gone`] });
    assert.ok(gone.stdout.trim() === 'gone' || / Z /.test(gone.stdout), `the child ${child} was killed too: ${gone.stdout}`);
  });

  test('streaming (NDJSON) from a flooding guest read slowly: bounded in Redis, every byte in order, then the exit line', async () => {
    const [inbox] = await stack.redis.keys('{monocore}:inbox:api:*');
    assert.ok(inbox, "the API's relay inbox");
    const res = await fetch(`${stack.url}${target}/exec`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
      body: JSON.stringify({ cmd: ['sh', '-c', 'seq 1 250000; echo done >&2; exit 7'] }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/x-ndjson/);
    let expected = '';
    for (let i = 1; i <= 250_000; i++) expected += `${i}\n`;
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = '';
    let reads = 0;
    let maxInbox = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
      // The first reads are slow: the guest must be held back, not buffered for us.
      if (reads++ < 30) {
        await new Promise((r) => setTimeout(r, 50));
        maxInbox = Math.max(maxInbox, Number(await stack.redis.memory('USAGE', inbox!)));
      }
    }
    const lines = text.trim().split('\n').map((l) => JSON.parse(l) as { stream?: string; data?: string; exit_code?: number });
    const out = lines.filter((l) => l.stream === 'stdout').map((l) => l.data).join('');
    assert.equal(out.length, expected.length);
    assert.equal(sha(Buffer.from(out)), sha(Buffer.from(expected)));
    assert.equal(lines.filter((l) => l.stream === 'stderr').map((l) => l.data).join(''), 'done\n');
    assert.equal(lines.at(-1)?.exit_code, 7);
    assert.equal(lines.filter((l) => l.exit_code !== undefined).length, 1);
    assert.ok(maxInbox < 2 * RELAY_WINDOW_BYTES, `the API's inbox held ${maxInbox} bytes`);
  });

  test('an interactive WebSocket session with a PTY: stdin, resize, exit', async () => {
    const ws = new WebSocket(`${stack.url.replace('http', 'ws')}${target}/exec/ws`);
    const frames: Array<{ text?: Record<string, unknown>; stream?: number; data?: Buffer }> = [];
    let closeCode = 0;
    ws.on('message', (d: Buffer, binary: boolean) => frames.push(binary ? { stream: d[0]!, data: d.subarray(1) } : { text: JSON.parse(d.toString()) as Record<string, unknown> }));
    const closed = new Promise<void>((r) => ws.on('close', (code) => ((closeCode = code), r())));
    await new Promise<void>((r, j) => (ws.once('open', () => r()), ws.once('error', j)));
    ws.send(JSON.stringify({ cmd: ['sh'], tty: { cols: 80, rows: 24 } }));
    const output = (): string => Buffer.concat(frames.filter((f) => f.stream === 1).map((f) => f.data!)).toString();
    await until('started', async () => frames.some((f) => f.text?.type === 'started'));
    ws.send(Buffer.from('tty -s && echo "tty:$(stty size)"\n'));
    await until('the tty answer', async () => /tty:24 80/.test(output()));
    ws.send(JSON.stringify({ type: 'resize', cols: 120, rows: 40 }));
    ws.send(JSON.stringify({ type: 'stdin', data: 'echo "size:$(stty size)"; exit 3\n' }));
    await closed;
    assert.match(output(), /size:40 120/);
    const exit = frames.find((f) => f.text?.type === 'exit')?.text;
    assert.equal(exit?.exit_code, 3);
    assert.equal(closeCode, 1000);

    // A session to an unknown sandbox closes with 4404 and says why.
    const bad = new WebSocket(`${stack.url.replace('http', 'ws')}/sandboxes/sb-000000000000/exec/ws`);
    const why: string[] = [];
    bad.on('message', (d: Buffer) => why.push(d.toString()));
    bad.on('open', () => bad.send(JSON.stringify({ cmd: ['true'] })));
    const code = await new Promise<number>((r) => bad.on('close', (c) => r(c)));
    assert.equal(code, 4404);
    assert.match(why.join(''), /MC_SANDBOX_NOT_FOUND/);
  });

  test('files: a binary round trip with checksum, mode, 404, relative path, over the limit leaves nothing', async () => {
    const data = randomBytes(5 << 20);
    const put = await fetch(`${stack.url}${target}/files?path=/data/sub/blob.bin&mode=0750`, { method: 'PUT', body: data });
    assert.equal(put.status, 200, await put.clone().text());
    assert.deepEqual(await put.json(), { path: '/data/sub/blob.bin', size: data.length, format: 'raw' });
    const get = await fetch(`${stack.url}${target}/files?path=/data/sub/blob.bin`);
    assert.equal(get.status, 200);
    assert.equal(get.headers.get('x-monocore-file-mode'), '0750');
    assert.equal(get.headers.get('x-monocore-file-size'), String(data.length));
    assert.equal(sha(Buffer.from(await get.arrayBuffer())), sha(data));
    const inGuest = await exec(stack.url, target, { cmd: ['sha256sum', '/data/sub/blob.bin'] });
    assert.equal(inGuest.stdout.split(' ')[0], sha(data));

    const missing = await call<{ code: string }>(stack.url, 'GET', `${target}/files?path=/nope`);
    assert.deepEqual([missing.status, missing.body.code], [404, 'MC_AGENT_FILE_NOT_FOUND']);
    const rel = await call<{ code: string; issues: Array<{ path: string }> }>(stack.url, 'GET', `${target}/files?path=etc/passwd`);
    assert.deepEqual([rel.status, rel.body.issues[0]?.path], [400, 'querystring.path']);
    const dir = await call<{ code: string }>(stack.url, 'GET', `${target}/files?path=/data`);
    assert.deepEqual([dir.status, dir.body.code], [422, 'MC_AGENT_FILE_ERROR']);

    // Over the limit, declared up front (Content-Length) or found out midway (a chunked body): 413, nothing left.
    const big = randomBytes(UPLOAD_LIMIT + 1);
    const declared = await fetch(`${stack.url}${target}/files?path=/data/big1`, { method: 'PUT', body: big });
    assert.equal(declared.status, 413);
    const chunked = await fetch(`${stack.url}${target}/files?path=/data/big2`, {
      method: 'PUT',
      body: (async function* () {
        for (let off = 0; off < big.length; off += 1 << 20) yield big.subarray(off, off + (1 << 20));
      })(),
      duplex: 'half',
    } as RequestInit);
    assert.equal(chunked.status, 413);
    assert.equal(((await chunked.json()) as { code: string }).code, 'MC_AGENT_FILE_TOO_LARGE');
    const ls = await exec(stack.url, target, { cmd: ['ls', '-a', '/data'] });
    assert.deepEqual(ls.stdout.trim().split('\n').sort(), ['.', '..', 'sub'], 'no big file and no temp file in the guest');
  });

  test('files: a directory as tar, both ways', async () => {
    const src = tempDir('sb-tar-src-');
    mkdirSync(join(src, 'a/b'), { recursive: true });
    writeFileSync(join(src, 'a/b/data.bin'), randomBytes(300_000));
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    symlinkSync('a/b/data.bin', join(src, 'link'));
    const tar = execFileSync('tar', ['-C', src, '-cf', '-', '.']);
    const put = await fetch(`${stack.url}${target}/files?path=/work/tree`, { method: 'PUT', body: tar, headers: { 'content-type': 'application/x-tar' } });
    assert.equal(put.status, 200, await put.clone().text());
    assert.equal(((await put.json()) as { format: string }).format, 'tar');
    const run = await exec(stack.url, target, { cmd: ['/work/tree/run.sh'] });
    assert.equal(run.stdout, 'hi\n');
    const get = await fetch(`${stack.url}${target}/files?path=/work/tree&format=tar`);
    assert.equal(get.status, 200);
    assert.equal(get.headers.get('content-type'), 'application/x-tar');
    const back = tempDir('sb-tar-back-');
    execFileSync('tar', ['-C', back, '-xf', '-'], { input: Buffer.from(await get.arrayBuffer()) });
    assert.equal(sha(readFileSync(join(back, 'a/b/data.bin'))), sha(readFileSync(join(src, 'a/b/data.bin'))));
    assert.equal(statSync(join(back, 'run.sh')).mode & 0o777, 0o755);
    assert.ok(lstatSync(join(back, 'link')).isSymbolicLink());
    assert.equal(readlinkSync(join(back, 'link')), 'a/b/data.bin');
    assert.deepEqual(readdirSync(back).sort(), ['a', 'link', 'run.sh']);
  });

  test('delete leaves no process, disk or lease; calls then answer 409; the record stays readable', async () => {
    assert.equal(sandboxVms(sb.id, stack.homes).length, 1);
    const del = await call<Sandbox>(stack.url, 'DELETE', target);
    assert.equal(del.status, 200);
    assert.equal(del.body.status, 'deleted');
    assert.ok(del.body.ended_at && del.body.reason);
    assert.equal(sandboxVms(sb.id, stack.homes).length, 0, 'no QEMU left');
    assert.equal(existsSync(join(stack.homes[0]!, 'sandboxes', sb.id)), false, 'no disk left');
    assert.equal(await stack.redis.exists(Keys.lease(sandboxSubject(sb.id))), 0, 'no lease left');
    const alloc = await stack.redis.hgetall(Keys.hostAlloc('sb1'));
    assert.equal(alloc[`sandbox:${sb.id}`], undefined, 'its capacity was released');
    const after = await call<{ code: string; details: { status: string } }>(stack.url, 'POST', `${target}/exec`, { cmd: ['true'] });
    assert.deepEqual([after.status, after.body.code, after.body.details.status], [409, 'MC_SANDBOX_NOT_RUNNING', 'deleted']);
    assert.equal((await call<Sandbox>(stack.url, 'GET', target)).body.status, 'deleted');
    assert.ok((await stack.redis.pttl(Keys.sandbox(sb.id))) > 0, 'the ended record expires after the retention period');
    assert.equal((await call<Sandbox>(stack.url, 'DELETE', target)).status, 200, 'idempotent');
  });

  test('lifetimes: idle_timeout_s and timeout_s end sandboxes as expired, and the event stream says so', async () => {
    const events = new AbortController();
    const res = await fetch(`${stack.url}/events`, { signal: events.signal });
    const seen: string[] = [];
    void (async () => {
      const dec = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) seen.push(dec.decode(chunk));
    })().catch(() => undefined);
    const [idle, short] = await Promise.all([
      createSandbox(stack.url, { image: vmEnv().image, ram: 128, idle_timeout_s: 3 }),
      createSandbox(stack.url, { image: vmEnv().image, ram: 128, timeout_s: 15 }),
    ]);
    // Activity keeps the idle one alive: a call every second for 5 s (longer than its idle time).
    for (let i = 0; i < 5; i++) {
      assert.equal((await exec(stack.url, `/sandboxes/${idle.id}`, { cmd: ['true'] })).exit_code, 0);
      await new Promise((r) => setTimeout(r, 1000));
    }
    const ended = async (id: string): Promise<Sandbox | undefined> => {
      const s = (await call<Sandbox>(stack.url, 'GET', `/sandboxes/${id}`)).body;
      return s.status === 'running' ? undefined : s;
    };
    const i = await until('the idle sandbox to expire', () => ended(idle.id), 30_000, 200);
    assert.equal(i.status, 'expired');
    assert.match(i.reason ?? '', /idle/);
    const s = await until('the short-lived sandbox to expire', () => ended(short.id), 60_000, 200);
    assert.equal(s.status, 'expired');
    assert.match(s.reason ?? '', /maximum life/);
    assert.ok(Date.parse(s.ended_at!) - Date.parse(s.created_at) >= 15_000);
    for (const id of [idle.id, short.id]) assert.equal(sandboxVms(id, stack.homes).length, 0);
    await until('both expirations on /events', async () => {
      const events = seen
        .join('')
        .split('\n')
        .filter((l) => l.startsWith('data: {'))
        .map((l) => JSON.parse(l.slice(6)) as { kind: string; sandbox?: string; to?: string; detail?: string });
      return [idle.id, short.id].every((id) => events.some((e) => e.kind === 'sandbox' && e.sandbox === id && e.to === 'expired' && e.detail));
    });
    events.abort();
  });

  test('a python sandbox: a script uploaded, run with stdin, its output read back as a file', async () => {
    const py = await createSandbox(stack.url, { image: vmEnv().imagePython, ram: 256, workdir: '/work' });
    const t = `/sandboxes/${py.id}`;
    // python3-minimal: the interpreter and a core of the standard library (no json).
    const script = 'import sys\nnums = [int(x) for x in sys.stdin.read().split()]\nopen("out.txt", "w").write("%d %d.%d" % (sum(nums), *sys.version_info[:2]))\nprint("done", len(nums))\n';
    assert.equal((await fetch(`${stack.url}${t}/files?path=/work/main.py`, { method: 'PUT', body: script })).status, 200);
    const r = await exec(stack.url, t, { cmd: ['python3', 'main.py'], stdin: '1 2 3 4' });
    assert.deepEqual([r.exit_code, r.stdout], [0, 'done 4\n'], r.stderr);
    assert.equal(await (await fetch(`${stack.url}${t}/files?path=/work/out.txt`)).text(), '10 3.11');
    const err = await exec(stack.url, t, { cmd: ['python3', '-c', 'raise SystemExit("bad input")'] });
    assert.deepEqual([err.exit_code, err.stderr], [1, 'bad input\n']);
    assert.equal((await call(stack.url, 'DELETE', t)).status, 200);
  });

  test('a pull failure fails the create with the registry\'s reason', async () => {
    const r = await call<{ code: string; message: string; details: { sandbox: string } }>(stack.url, 'POST', '/sandboxes', {
      image: `${vmEnv().registry}/monocore-test/no-such-image:1`,
    });
    assert.deepEqual([r.status, r.body.code], [404, 'MC_OCI_MANIFEST_NOT_FOUND'], JSON.stringify(r.body));
    assert.match(r.body.message, /no-such-image/);
    const rec = (await call<Sandbox>(stack.url, 'GET', `/sandboxes/${r.body.details.sandbox}`)).body;
    assert.deepEqual([rec.status, rec.code], ['failed', 'MC_OCI_MANIFEST_NOT_FOUND']);
  });

  test('exec and files in a monocore.toml service', async () => {
    const up = await call<{ ok: boolean }>(stack.url, 'POST', '/up?wait=true', {
      service: [{ name: 'web', base: vmEnv().image, command: '/bin/sh', args: ['-c', 'echo started > /tmp/marker; exec sleep 3600'], ram: 128, envs: ['ROLE=web'] }],
    });
    assert.equal(up.body.ok, true, JSON.stringify(up.body));
    // `running` means the command was exec'd; it writes its marker a moment later.
    const r = await exec(stack.url, '/services/web', { cmd: ['sh', '-c', 'while [ ! -f /tmp/marker ]; do sleep 0.1; done; cat /tmp/marker; echo "$ROLE"'] });
    assert.equal(r.stdout, 'started\nweb\n', 'the agent runs beside the command, with its env');
    const put = await fetch(`${stack.url}/services/web/files?path=/tmp/x.txt`, { method: 'PUT', body: 'from the api' });
    assert.equal(put.status, 200);
    assert.equal(await (await fetch(`${stack.url}/services/web/files?path=/tmp/x.txt`)).text(), 'from the api');
    const unknown = await call<{ code: string }>(stack.url, 'POST', '/services/nope/exec', { cmd: ['true'] });
    assert.deepEqual([unknown.status, unknown.body.code], [404, 'MC_ORCH_UNKNOWN_SERVICE']);
    await call(stack.url, 'POST', '/down?wait=true', { services: ['web'] });
    const stopped = await call<{ code: string }>(stack.url, 'POST', '/services/web/exec', { cmd: ['true'] });
    assert.deepEqual([stopped.status, stopped.body.code], [409, 'MC_ORCH_SERVICE_NOT_RUNNING']);
  });
});
