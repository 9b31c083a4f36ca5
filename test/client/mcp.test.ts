// `monocore mcp` driven by the MCP SDK's own client over stdio, against a real
// `monocore serve` (embedded Redis, real worker, QEMU/TCG microVMs): the tools
// list with its schemas, then create_sandbox, run_command, write_file,
// read_file, run_code (in that sandbox, and in a fresh one destroyed after),
// list_sandboxes, fork_sandbox, destroy_sandbox, and tool errors with the API's codes.
// Boots: the sandbox, run_code's fresh one, and a fork.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { testEnvWithKernel } from '../support/env.js';
import { CLI, startServe, type ServeProcess } from '../support/serve-process.js';

const env = testEnvWithKernel();
let serve: ServeProcess;
let mcp: Client;
let mcpStderr = '';
let sandboxId: string;

interface ToolResult {
  isError?: boolean;
  content: Array<{ type: string; text?: string }>;
  structuredContent?: Record<string, unknown>;
}

async function call(name: string, args: Record<string, unknown>): Promise<ToolResult> {
  return (await mcp.callTool({ name, arguments: args })) as ToolResult;
}
const text = (r: ToolResult): string => r.content.map((c) => c.text ?? '').join('\n');
const show = (r: ToolResult): string => `${JSON.stringify(r, null, 1)}\nmcp stderr:\n${mcpStderr.slice(-2000)}\nserve:\n${serve.log().slice(-2000)}`;

before(async () => {
  serve = await startServe(env, { hostId: 'mcp-host', prefix: 'mcp-' });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'mcp', '--sh-image', env.image],
    env: serve.clientEnv() as Record<string, string>,
    stderr: 'pipe',
  });
  transport.stderr?.on('data', (d: Buffer) => (mcpStderr += d.toString()));
  mcp = new Client({ name: 'monocore-test', version: '1.0.0' });
  await mcp.connect(transport);
});

after(async () => {
  await mcp?.close();
  await serve?.stop();
});

test('the server lists its tools with descriptions and input schemas', async () => {
  const { tools } = await mcp.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['create_sandbox', 'destroy_sandbox', 'fork_sandbox', 'list_sandboxes', 'read_file', 'run_code', 'run_command', 'write_file']);
  for (const t of tools) {
    assert.ok((t.description ?? '').length > 40, `${t.name} has a description`);
    assert.equal(t.inputSchema.type, 'object');
  }
  const runCode = tools.find((t) => t.name === 'run_code')!;
  assert.deepEqual((runCode.inputSchema.properties as Record<string, { enum?: string[] }>).language?.enum, ['python', 'node', 'sh']);
  assert.deepEqual(runCode.inputSchema.required, ['language', 'code']);
  assert.equal(mcp.getServerVersion()?.name, 'monocore');
});

test('create_sandbox, run_command, write_file and read_file in one sandbox', async () => {
  const created = await call('create_sandbox', { image: env.image, ram: 256, env: { GREETING: 'hello' } });
  assert.notEqual(created.isError, true, show(created));
  sandboxId = (created.structuredContent?.sandbox as { id: string }).id;
  assert.match(sandboxId, /^sb-[a-z0-9]{12}$/);
  assert.match(text(created), new RegExp(`created sandbox ${sandboxId}`));

  const shell = await call('run_command', { sandbox_id: sandboxId, command: 'echo "$GREETING" && cd /tmp && pwd; echo oops >&2; exit 3' });
  assert.notEqual(shell.isError, true, show(shell));
  assert.deepEqual(
    [shell.structuredContent?.exit_code, shell.structuredContent?.stdout, shell.structuredContent?.stderr],
    [3, 'hello\n/tmp\n', 'oops\n'],
  );
  assert.match(text(shell), /^exit code 3\nstdout:\nhello\n\/tmp\n\nstderr:\noops\n$/);
  const argv = await call('run_command', { sandbox_id: sandboxId, command: ['sh', '-c', 'cat; echo " $X"'], stdin: 'in', env: { X: 'y' }, cwd: '/' });
  assert.equal(argv.structuredContent?.stdout, 'in y\n', show(argv));

  const wrote = await call('write_file', { sandbox_id: sandboxId, path: '/work/notes/a.txt', content: 'line 1\nline 2\n' });
  assert.deepEqual(wrote.structuredContent, { path: '/work/notes/a.txt', size: 14 }, show(wrote));
  const bin = Buffer.from([0, 1, 2, 253, 254, 255]);
  await call('write_file', { sandbox_id: sandboxId, path: '/work/b.bin', content: bin.toString('base64'), encoding: 'base64', mode: '600' });
  const read = await call('read_file', { sandbox_id: sandboxId, path: '/work/notes/a.txt' });
  assert.equal(text(read), 'line 1\nline 2\n', show(read));
  const readBin = await call('read_file', { sandbox_id: sandboxId, path: '/work/b.bin', encoding: 'base64' });
  assert.deepEqual(Buffer.from(String(readBin.structuredContent?.content), 'base64'), bin);
  assert.equal((await call('run_command', { sandbox_id: sandboxId, command: 'stat -c %a /work/b.bin' })).structuredContent?.stdout, '600\n');
});

test('run_code: in the given sandbox (the file stays there), and in a fresh sandbox destroyed afterwards', async () => {
  const inside = await call('run_code', { language: 'sh', sandbox_id: sandboxId, code: 'echo "from $0"; cat /work/notes/a.txt | wc -l', stdin: '' });
  assert.notEqual(inside.isError, true, show(inside));
  const file = String(inside.structuredContent?.file);
  assert.match(file, /^\/tmp\/monocore-run\/[0-9a-f]{12}\.sh$/);
  assert.equal(inside.structuredContent?.stdout, `from ${file}\n2\n`);
  assert.equal(inside.structuredContent?.sandbox_id, sandboxId);

  // An interpreter the image lacks: a result with exit code 127, not a tool error.
  const noPython = await call('run_code', { language: 'python', sandbox_id: sandboxId, code: 'print(1)' });
  assert.notEqual(noPython.isError, true, show(noPython));
  assert.equal(noPython.structuredContent?.exit_code, 127);

  const fresh = await call('run_code', { language: 'sh', code: 'echo fresh; uname -n; exit 5' });
  assert.notEqual(fresh.isError, true, show(fresh));
  const freshId = String(fresh.structuredContent?.sandbox_id);
  assert.notEqual(freshId, sandboxId);
  assert.equal(fresh.structuredContent?.exit_code, 5);
  assert.equal(fresh.structuredContent?.stdout, `fresh\n${freshId}\n`);
  const listed = await call('list_sandboxes', {});
  const all = listed.structuredContent?.sandboxes as Array<{ id: string; status: string }>;
  assert.equal(all.find((s) => s.id === freshId)?.status, 'deleted', 'the fresh sandbox is destroyed');
  assert.equal(all.find((s) => s.id === sandboxId)?.status, 'running');
});

test('fork_sandbox: a copy continues from the sandbox\'s files, then goes its own way', async () => {
  await call('run_command', { sandbox_id: sandboxId, command: 'echo from-parent > /tmp/fork-probe' });
  const forked = await call('fork_sandbox', { sandbox_id: sandboxId });
  assert.equal(forked.isError, undefined, show(forked));
  const [copy] = forked.structuredContent?.sandboxes as Array<{ id: string; status: string }>;
  assert.equal(copy?.status, 'running');
  const seen = await call('run_command', { sandbox_id: copy!.id, command: 'cat /tmp/fork-probe; echo mine > /tmp/fork-probe' });
  assert.equal((seen.structuredContent as { stdout: string }).stdout, 'from-parent\n', show(seen));
  const parent = await call('run_command', { sandbox_id: sandboxId, command: 'cat /tmp/fork-probe' });
  assert.equal((parent.structuredContent as { stdout: string }).stdout, 'from-parent\n', 'the copy\'s writes are its own');
  await call('destroy_sandbox', { sandbox_id: copy!.id });
});

test('failures are tool errors with the API code; destroy_sandbox ends it', async () => {
  const unknown = await call('run_command', { sandbox_id: 'sb-000000000000', command: 'true' });
  assert.equal(unknown.isError, true);
  assert.match(text(unknown), /^MC_SANDBOX_NOT_FOUND: /);
  const missing = await call('read_file', { sandbox_id: sandboxId, path: '/no/such/file' });
  assert.equal(missing.isError, true);
  assert.match(text(missing), /^MC_AGENT_FILE_NOT_FOUND: /);
  const invalid = await call('write_file', { sandbox_id: sandboxId, path: 'relative.txt', content: 'x' });
  assert.equal(invalid.isError, true, 'the input schema refuses a relative path');

  const destroyed = await call('destroy_sandbox', { sandbox_id: sandboxId });
  assert.equal((destroyed.structuredContent?.sandbox as { status: string }).status, 'deleted', show(destroyed));
  const after = await call('run_command', { sandbox_id: sandboxId, command: 'true' });
  assert.equal(after.isError, true);
  assert.match(text(after), /^MC_SANDBOX_NOT_RUNNING: /);
  const running = await call('list_sandboxes', { status: ['running'] });
  assert.deepEqual(running.structuredContent?.sandboxes, []);
});
