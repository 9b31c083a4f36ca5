import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CreateSandboxRequestSchema,
  ExecRequestSchema,
  ExecSessionClientMessageSchema,
  ExecStreamLineSchema,
  FilesQuerySchema,
  ListSandboxesQuerySchema,
  SandboxIdSchema,
  SandboxSchema,
} from './sandbox.js';

const issuePaths = (r: { success: boolean; error?: { issues: Array<{ path: PropertyKey[] }> } }): string[] =>
  (r.error?.issues ?? []).map((i) => i.path.map(String).join('.'));

test('create: defaults are applied, unknown keys and bad values are named', () => {
  const ok = CreateSandboxRequestSchema.parse({ image: 'busybox:1' });
  assert.deepEqual(ok, { image: 'busybox:1', cpus: 1, ram: 512, disk: 4096, timeout_s: 3600, network: 'none', on_idle: 'expire', cold: false });
  const bad = CreateSandboxRequestSchema.safeParse({ image: 'x', ram: 'lots', disk: 10, workdir: 'rel', colour: 1, env: { 'A=B': 'x' } });
  assert.equal(bad.success, false);
  assert.deepEqual(issuePaths(bad).sort(), ['', 'disk', 'env.A=B', 'ram', 'workdir'].sort());
});

test('create: network is a mode or the monocore.toml form { outbound, allow } (entries are the engine\'s to check)', () => {
  const allow = ['pypi.org', '*.githubusercontent.com', '203.0.113.0/24'];
  assert.deepEqual(CreateSandboxRequestSchema.parse({ image: 'x', network: { outbound: true, allow } }).network, { outbound: true, allow });
  assert.deepEqual(CreateSandboxRequestSchema.parse({ image: 'x', network: { outbound: true } }).network, { outbound: true });
  assert.equal(CreateSandboxRequestSchema.parse({ image: 'x', network: 'outbound' }).network, 'outbound');
  assert.deepEqual(issuePaths(CreateSandboxRequestSchema.safeParse({ image: 'x', network: 'internet' })), ['network']);
  assert.deepEqual(issuePaths(CreateSandboxRequestSchema.safeParse({ image: 'x', network: { outbound: true, allow: 'pypi.org' } })), ['network']);
  assert.deepEqual(issuePaths(CreateSandboxRequestSchema.safeParse({ image: 'x', network: { outbound: true, alow: [] } })), ['network']);
  assert.equal(CreateSandboxRequestSchema.safeParse({ image: 'x', network: { allow } }).success, false, 'outbound is required');
  const sandbox = SandboxSchema.parse({
    id: 'sb-0123456789ab', status: 'running', host: 'h', image: 'x', cpus: 1, ram: 512, disk: 4096, env: {}, network: 'outbound', network_allow: allow,
    timeout_s: 60, idle_timeout_s: null, on_idle: 'expire', created_at: 't', expires_at: 't', last_activity_at: 't',
  });
  assert.deepEqual(sandbox.network_allow, allow);
});

test('exec: cmd needs a program, timeouts are bounded, encoding defaults to utf8', () => {
  assert.equal(ExecRequestSchema.parse({ cmd: ['true'] }).encoding, 'utf8');
  assert.deepEqual(issuePaths(ExecRequestSchema.safeParse({ cmd: [] })), ['cmd']);
  assert.deepEqual(issuePaths(ExecRequestSchema.safeParse({ cmd: ['a\0b'] })), ['cmd.0']);
  assert.deepEqual(issuePaths(ExecRequestSchema.safeParse({ cmd: ['sleep'], timeout_s: 0 })), ['timeout_s']);
  assert.deepEqual(issuePaths(ExecRequestSchema.safeParse({ cmd: ['ls'], cwd: 'tmp' })), ['cwd']);
});

test('files: a relative path is refused; mode is octal', () => {
  assert.deepEqual(issuePaths(FilesQuerySchema.safeParse({ path: 'etc/passwd' })), ['path']);
  assert.deepEqual(issuePaths(FilesQuerySchema.safeParse({ path: '/x', mode: '999' })), ['mode']);
  assert.equal(FilesQuerySchema.parse({ path: '/x', mode: '0755' }).mode, '0755');
});

test('ids, list filters, stream lines and session messages', () => {
  assert.equal(SandboxIdSchema.safeParse('sb-0123456789ab').success, true);
  assert.equal(SandboxIdSchema.safeParse('sb-../../etc').success, false);
  assert.deepEqual(ListSandboxesQuerySchema.parse({ status: 'running,lost' }).status, ['running', 'lost']);
  assert.equal(ListSandboxesQuerySchema.safeParse({ status: 'sleeping' }).success, false);
  assert.equal(ExecStreamLineSchema.safeParse({ stream: 'stdout', data: 'hi' }).success, true);
  assert.equal(ExecStreamLineSchema.safeParse({ exit_code: 0, signal: null, timed_out: false, duration_ms: 3 }).success, true);
  assert.equal(ExecStreamLineSchema.safeParse({ error: { code: 'MC_SANDBOX_LOST', message: 'x' } }).success, true);
  assert.deepEqual(ExecSessionClientMessageSchema.parse({ type: 'signal', signal: 'SIGINT' }), { type: 'signal', signal: 'SIGINT', target: 'process' });
  assert.equal(ExecSessionClientMessageSchema.safeParse({ type: 'resize', cols: 0, rows: 10 }).success, false);
});
