import { randomBytes } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import {
  CreateSandboxRequestSchema,
  EnvMapSchema,
  GuestPathSchema,
  MAX_EXEC_TIMEOUT_S,
  MAX_FORK_COUNT,
  MAX_SANDBOX_ALLOW_ENTRIES,
  SANDBOX_STATUSES,
  SandboxIdSchema,
  SandboxNetworkModeSchema,
  type CreateSandboxRequest,
} from '@monocore/api-schemas';
import { MonocoreApiError, type ExecResult, type MonocoreClient, type Sandbox, type SandboxRecord } from '@monocore/client';
import { RUN_CODE_LANGUAGES, runCodePlan, type RunCodeLanguage } from './run-code-plan.js';

export interface McpServerOptions {
  /** monocore's version, announced to the client. */
  version: string;
  /** Image of a fresh sandbox for run_code per language when the call names none. */
  images: Record<RunCodeLanguage, string>;
  /** Largest text a read or an exec returns to the model, characters per stream (the rest is cut, and it says so). */
  maxOutputChars?: number;
}

const DEFAULT_MAX_OUTPUT = 100_000;

/** The fields of the API's CreateSandboxRequest the tools take (zod shapes the MCP SDK turns into JSON Schema). */
const createFields = {
  image: CreateSandboxRequestSchema.shape.image,
  cpus: CreateSandboxRequestSchema.shape.cpus.optional(),
  ram: CreateSandboxRequestSchema.shape.ram.optional(),
  disk: CreateSandboxRequestSchema.shape.disk.optional(),
  env: EnvMapSchema.optional().describe('environment variables of every command run in it'),
  timeout_s: CreateSandboxRequestSchema.shape.timeout_s.optional().describe('maximum life in seconds (default 3600); then it is destroyed'),
  idle_timeout_s: CreateSandboxRequestSchema.shape.idle_timeout_s,
  network: SandboxNetworkModeSchema.optional().describe('"none" (default): no network; "outbound": the internet, never the host'),
  allow: z
    .array(z.string())
    .min(1)
    .max(MAX_SANDBOX_ALLOW_ENTRIES)
    .optional()
    .describe(
      'with network "outbound": reach only these destinations: DNS names (pypi.org), *.suffix wildcards (*.pythonhosted.org), ' +
        'IPv4 addresses and CIDR ranges (203.0.113.0/24); every other name fails to resolve and every other address is unreachable',
    ),
};

/**
 * The API's CreateSandboxRequest from create_sandbox's arguments: `allow` becomes
 * the `{ outbound, allow }` form, and the API checks it (a bad entry, or allow
 * without network "outbound", comes back as a tool error naming network.allow).
 */
export function createSandboxRequest(args: z.infer<z.ZodObject<typeof createFields>>): CreateSandboxRequest {
  const { allow, network, ...rest } = args;
  if (allow === undefined) return { ...rest, ...(network !== undefined ? { network } : {}) };
  return { ...rest, network: { outbound: network === 'outbound', allow } };
}

const commandSchema = z
  .union([z.string().min(1), z.array(z.string()).min(1)])
  .describe('a shell command line (run with sh -c), or a program and its arguments as an array (no shell)');

const execFields = {
  cwd: GuestPathSchema.optional().describe('working directory (absolute; default: the sandbox\'s)'),
  env: EnvMapSchema.optional().describe('extra environment variables for this command'),
  stdin: z.string().optional().describe('text written to the command\'s standard input'),
  timeout_s: z.number().positive().max(MAX_EXEC_TIMEOUT_S).optional().describe('kill the command after this many seconds (exit code 137, timed_out true)'),
};

const execOutput = {
  exit_code: z.number().int(),
  stdout: z.string(),
  stderr: z.string(),
  timed_out: z.boolean(),
  duration_ms: z.number(),
};

const sandboxSummary = z.object({
  id: z.string(),
  status: z.enum(SANDBOX_STATUSES),
  image: z.string(),
  created_at: z.string(),
  expires_at: z.string(),
  reason: z.string().optional(),
});

const summary = (s: SandboxRecord): z.infer<typeof sandboxSummary> => ({
  id: s.id,
  status: s.status,
  image: s.image,
  created_at: s.created_at,
  expires_at: s.expires_at,
  ...(s.reason !== undefined ? { reason: s.reason } : {}),
});

/**
 * `monocore mcp`: monocore's sandboxes as MCP tools for AI agents, served over
 * stdio (the MCP SDK's McpServer). Each tool is one or two calls of the SDK
 * (@monocore/client); failures are tool errors carrying the API's code and
 * message, so the model can read what went wrong.
 */
export function createMonocoreMcpServer(client: MonocoreClient, options: McpServerOptions): McpServer {
  const max = options.maxOutputChars ?? DEFAULT_MAX_OUTPUT;
  const cut = (text: string, what: string): string =>
    text.length <= max ? text : `${text.slice(0, max)}\n[… ${what} cut: ${text.length - max} more characters]`;
  const execResult = (r: ExecResult): z.infer<z.ZodObject<typeof execOutput>> => ({
    exit_code: r.exit_code,
    stdout: cut(r.stdout, 'stdout'),
    stderr: cut(r.stderr, 'stderr'),
    timed_out: r.timed_out,
    duration_ms: r.duration_ms,
  });
  const server = new McpServer({ name: 'monocore', version: options.version }, { instructions: INSTRUCTIONS });

  server.registerTool(
    'create_sandbox',
    {
      title: 'Create a sandbox',
      description:
        'Create an isolated sandbox (a microVM) from an OCI image and return its id once it accepts commands. ' +
        'Files and processes persist between commands until the sandbox is destroyed or expires (timeout_s, default 1 hour). ' +
        'Destroy it with destroy_sandbox when done.',
      inputSchema: createFields,
      outputSchema: { sandbox: sandboxSummary },
    },
    async (args) =>
      tool(async () => {
        const sandbox = await client.createSandbox(createSandboxRequest(args));
        const s = summary(sandbox.info);
        return { text: `created sandbox ${s.id} from ${s.image} (expires ${s.expires_at})`, structured: { sandbox: s } };
      }),
  );

  server.registerTool(
    'run_command',
    {
      title: 'Run a command in a sandbox',
      description:
        'Run a command in an existing sandbox and wait for it to finish. Returns its exit code, stdout and stderr. ' +
        'A non-zero exit code is a normal result, not an error. Use a string for a shell command line (pipes, &&, cd), ' +
        'an array to run a program directly.',
      inputSchema: { sandbox_id: SandboxIdSchema.describe('the id returned by create_sandbox'), command: commandSchema, ...execFields },
      outputSchema: execOutput,
    },
    async ({ sandbox_id, command, ...rest }) =>
      tool(async () => {
        const sandbox = await client.getSandbox(sandbox_id);
        const r = execResult(await sandbox.exec(command, rest));
        return { text: formatExec(r), structured: r };
      }),
  );

  server.registerTool(
    'run_code',
    {
      title: 'Run code',
      description:
        `Run a program in Python, JavaScript (Node.js) or shell: the code is written to a file in the sandbox and run with ` +
        `python3, node or sh; returns exit code, stdout and stderr. With sandbox_id it runs in that sandbox (files it ` +
        `writes stay there); without, in a fresh sandbox destroyed afterwards (keep_sandbox: true keeps it and returns ` +
        `its id). Fresh sandboxes use the image given, else ${Object.entries(options.images)
          .map(([l, i]) => `${l}: ${i}`)
          .join(', ')}.`,
      inputSchema: {
        language: z.enum(RUN_CODE_LANGUAGES).describe('python, node or sh'),
        code: z.string().min(1).describe('the program source'),
        sandbox_id: SandboxIdSchema.optional().describe('run in this sandbox (default: a fresh one)'),
        image: z.string().min(1).optional().describe('image of the fresh sandbox (it must have the interpreter)'),
        keep_sandbox: z.boolean().optional().describe('keep the fresh sandbox and return its id (default false: destroyed)'),
        stdin: execFields.stdin,
        timeout_s: execFields.timeout_s,
      },
      outputSchema: { ...execOutput, sandbox_id: z.string(), file: z.string() },
    },
    async ({ language, code, sandbox_id, image, keep_sandbox, stdin, timeout_s }) =>
      tool(async () => {
        let sandbox: Sandbox;
        let fresh = false;
        if (sandbox_id !== undefined) sandbox = await client.getSandbox(sandbox_id);
        else {
          sandbox = await client.createSandbox({ image: image ?? options.images[language] });
          fresh = true;
        }
        try {
          const plan = runCodePlan(language, randomBytes(6).toString('hex'));
          await sandbox.files.write(plan.file, code, { mode: 0o644 });
          const r = execResult(await sandbox.exec(plan.argv, { ...(stdin !== undefined ? { stdin } : {}), ...(timeout_s !== undefined ? { timeout_s } : {}) }));
          const kept = fresh && keep_sandbox === true ? `\n(sandbox ${sandbox.id} kept: destroy it with destroy_sandbox)` : '';
          return { text: `${formatExec(r)}${kept}`, structured: { ...r, sandbox_id: sandbox.id, file: plan.file } };
        } finally {
          if (fresh && keep_sandbox !== true) await sandbox.kill().catch(() => undefined);
        }
      }),
  );

  server.registerTool(
    'write_file',
    {
      title: 'Write a file',
      description: 'Write a file in a sandbox (parent directories are created; an existing file is replaced). Text by default; base64 for binary content.',
      inputSchema: {
        sandbox_id: SandboxIdSchema,
        path: GuestPathSchema.describe('absolute path in the sandbox'),
        content: z.string().describe('the file content'),
        encoding: z.enum(['utf8', 'base64']).optional().describe('utf8 (default) or base64'),
        mode: z.string().regex(/^0?[0-7]{3,4}$/).optional().describe('permission bits in octal, e.g. "755" (default 644)'),
      },
      outputSchema: { path: z.string(), size: z.number() },
    },
    async ({ sandbox_id, path, content, encoding, mode }) =>
      tool(async () => {
        const sandbox = await client.getSandbox(sandbox_id);
        const data = encoding === 'base64' ? Buffer.from(content, 'base64') : Buffer.from(content, 'utf8');
        const r = await sandbox.files.write(path, data, mode !== undefined ? { mode } : {});
        return { text: `wrote ${r.size} bytes to ${r.path}`, structured: { path: r.path, size: r.size } };
      }),
  );

  server.registerTool(
    'read_file',
    {
      title: 'Read a file',
      description: 'Read a file from a sandbox. Text by default (invalid UTF-8 is replaced); base64 for binary files. Long files are cut.',
      inputSchema: {
        sandbox_id: SandboxIdSchema,
        path: GuestPathSchema.describe('absolute path in the sandbox'),
        encoding: z.enum(['utf8', 'base64']).optional().describe('utf8 (default) or base64'),
      },
      outputSchema: { path: z.string(), size: z.number(), content: z.string(), truncated: z.boolean() },
    },
    async ({ sandbox_id, path, encoding }) =>
      tool(async () => {
        const sandbox = await client.getSandbox(sandbox_id);
        const bytes = await sandbox.files.read(path);
        const full = encoding === 'base64' ? bytes.toString('base64') : bytes.toString('utf8');
        const content = full.length > max ? full.slice(0, max) : full;
        const truncated = content.length < full.length;
        return {
          text: truncated ? `${content}\n[… cut: the file has ${bytes.length} bytes]` : content,
          structured: { path, size: bytes.length, content, truncated },
        };
      }),
  );

  server.registerTool(
    'list_sandboxes',
    {
      title: 'List sandboxes',
      description: 'List sandboxes with their status (running ones, and ended ones for a while with the reason they ended).',
      inputSchema: { status: z.array(z.enum(SANDBOX_STATUSES)).optional().describe('only these statuses, e.g. ["running"]') },
      outputSchema: { sandboxes: z.array(sandboxSummary) },
      annotations: { readOnlyHint: true },
    },
    async ({ status }) =>
      tool(async () => {
        const list = (await client.listSandboxes(status ? { status } : {})).map((s) => summary(s.info));
        const text = list.length === 0 ? 'no sandboxes' : list.map((s) => `${s.id}  ${s.status}  ${s.image}${s.reason ? `  (${s.reason})` : ''}`).join('\n');
        return { text, structured: { sandboxes: list } };
      }),
  );

  server.registerTool(
    'fork_sandbox',
    {
      title: 'Fork a sandbox',
      description:
        'Copy a running sandbox: each copy continues from its memory, running processes and files at this moment, then goes its own ' +
        'way (writes in one are not seen by the others). Use it to try several approaches from one prepared state. Destroy copies you no longer need.',
      inputSchema: {
        sandbox_id: SandboxIdSchema,
        count: z.number().int().min(1).max(MAX_FORK_COUNT).optional().describe(`how many copies (default 1, at most ${MAX_FORK_COUNT})`),
      },
      outputSchema: { sandboxes: z.array(sandboxSummary) },
    },
    async ({ sandbox_id, count }) =>
      tool(async () => {
        const copies = (await (await client.getSandbox(sandbox_id)).fork({ count: count ?? 1 })).map((s) => summary(s.info));
        return { text: `forked ${sandbox_id} into ${copies.map((c) => c.id).join(', ')}`, structured: { sandboxes: copies } };
      }),
  );

  server.registerTool(
    'destroy_sandbox',
    {
      title: 'Destroy a sandbox',
      description: 'Destroy a sandbox: its VM is stopped and its files are deleted. Idempotent.',
      inputSchema: { sandbox_id: SandboxIdSchema },
      outputSchema: { sandbox: sandboxSummary },
      annotations: { destructiveHint: true, idempotentHint: true },
    },
    async ({ sandbox_id }) =>
      tool(async () => {
        const s = summary(await client.deleteSandbox(sandbox_id));
        return { text: `sandbox ${s.id} is ${s.status}`, structured: { sandbox: s } };
      }),
  );

  return server;
}

const INSTRUCTIONS =
  'monocore runs code in isolated microVM sandboxes. Typical use: create_sandbox, then run_command / write_file / ' +
  'read_file as often as needed (state persists), then destroy_sandbox. For a one-off program, run_code without a sandbox_id.';

function formatExec(r: { exit_code: number; stdout: string; stderr: string; timed_out: boolean }): string {
  const parts = [`exit code ${r.exit_code}${r.timed_out ? ' (timed out, killed)' : ''}`];
  if (r.stdout) parts.push(`stdout:\n${r.stdout}`);
  if (r.stderr) parts.push(`stderr:\n${r.stderr}`);
  return parts.join('\n');
}

/** A tool's answer: text for the model plus structured content; an API failure is a tool error with its code. */
async function tool(run: () => Promise<{ text: string; structured: Record<string, unknown> }>): Promise<CallToolResult> {
  try {
    const { text, structured } = await run();
    return { content: [{ type: 'text', text }], structuredContent: structured };
  } catch (err) {
    if (!(err instanceof MonocoreApiError)) throw err;
    return { isError: true, content: [{ type: 'text', text: `${err.code}: ${err.message}` }] };
  }
}
