import { z } from 'zod';

/**
 * Sandboxes over REST (docs/API.md "Sandboxes"): request and response bodies
 * of /sandboxes, /sandboxes/:id/exec, /sandboxes/:id/files and the same exec
 * and files routes of services. The API validates with these schemas and
 * generates its OpenAPI document from them; clients type themselves from them
 * (`z.input<>` for what they send, `z.infer<>` for what they get).
 *
 * Field names are snake_case on these routes (`exit_code`, `timeout_s`).
 */

// --- building blocks ---------------------------------------------------------

/** Lifecycle of a sandbox: creating → running → one of the ended statuses (kept for the retention period). */
export const SANDBOX_STATUSES = ['creating', 'running', 'paused', 'expired', 'deleted', 'lost', 'failed'] as const;
export const SandboxStatusSchema = z
  .enum(SANDBOX_STATUSES)
  .describe(
    'creating (placed, image pulling, VM booting), running (accepts exec and files), ' +
      'paused (its VM saved to its host\'s disk, no QEMU process, no host memory: POST …/resume continues it), ' +
      'expired (timeout_s or idle_timeout_s passed), deleted (DELETE), lost (its VM or its worker host died: ' +
      'its state is gone, it is not recreated), failed (it could not be created: see reason and code)',
  );
export type SandboxStatus = z.infer<typeof SandboxStatusSchema>;

/** Statuses a sandbox never leaves (its record stays readable for the retention period). */
export const ENDED_SANDBOX_STATUSES = ['expired', 'deleted', 'lost', 'failed'] as const satisfies readonly SandboxStatus[];

export const SANDBOX_ID_PATTERN = /^sb-[a-z0-9]{12}$/;
export const SandboxIdSchema = z.string().regex(SANDBOX_ID_PATTERN, 'a sandbox id: "sb-" and 12 lowercase letters or digits');

const noNul = (s: string): boolean => !s.includes('\0');

/** An absolute guest path (the guest's own view: resolved by the guest kernel). */
export const GuestPathSchema = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => p.startsWith('/'), 'must be an absolute guest path (starting with /)')
  .refine(noNul, 'must not contain a NUL byte');

/** Environment entries; later layers (image, sandbox, exec) override earlier ones key by key. */
export const EnvMapSchema = z
  .record(
    z.string().min(1).max(1024).regex(/^[^=\0]+$/, 'an environment variable name (no "=" or NUL)'),
    z.string().max(128 * 1024).refine(noNul, 'must not contain a NUL byte'),
  )
  .refine((env) => Object.keys(env).length <= 1024, 'at most 1024 variables')
  .describe('environment variables, name → value');

/** An OCI user string, resolved against the guest's /etc/passwd and /etc/group: name, uid, name:group, uid:gid. */
export const GuestUserSchema = z
  .string()
  .min(1)
  .max(256)
  .refine(noNul, 'must not contain a NUL byte')
  .describe('user to run as: name, uid, name:group or uid:gid (resolved in the guest; default: the image User, else root)');

/** How text fields carry bytes: UTF-8 text (invalid sequences become U+FFFD) or base64 (binary-safe). */
export const ByteEncodingSchema = z.enum(['utf8', 'base64']);

// --- POST /sandboxes ---------------------------------------------------------

export const SANDBOX_DEFAULTS = {
  cpus: 1,
  ram: 512,
  /** MiB: the same default as a service's writable disk (ConfigLimits.diskDefault). */
  disk: 4096,
  timeout_s: 3600,
  network: 'none',
} as const;

/** Most entries of a sandbox's `network.allow` (the same bound as a monocore.toml list). */
export const MAX_SANDBOX_ALLOW_ENTRIES = 1024;

export const SandboxNetworkModeSchema = z
  .enum(['none', 'outbound'])
  .describe('none: loopback only; outbound: the internet, never the host nor other guests (docs/NETWORK.md)');

/**
 * `network` of POST /sandboxes: a mode, or the form a monocore.toml group writes
 * (`{ "outbound": true, "allow": [...] }`). Only the shape is checked here: the
 * entries' syntax has one home, the engine's EgressAllowList, which answers
 * 400 MC_VM_EGRESS_ALLOW_INVALID naming `network.allow[i]`.
 */
export const SandboxNetworkRequestSchema = z
  .union([
    SandboxNetworkModeSchema,
    z
      .strictObject({
        outbound: z.boolean().describe('true: the internet, never the host nor other guests; false: loopback only (the same as "none")'),
        allow: z
          .array(z.string().max(1024))
          .max(MAX_SANDBOX_ALLOW_ENTRIES)
          .optional()
          .describe(
            'with outbound: true, only these destinations: DNS names, *.suffix wildcards, IPv4 addresses, IPv4 CIDR ranges ' +
              '(docs/NETWORK.md "Allow-lists"); names resolve only through monocore\'s resolver',
          )
          .meta({ examples: [['pypi.org', '*.githubusercontent.com', '203.0.113.0/24']] }),
      })
      .describe('the monocore.toml form, for an allow-list'),
  ])
  .describe('"none" (default), "outbound", or { "outbound": true, "allow": [...] } to reach only the listed destinations');
export type SandboxNetworkRequest = z.input<typeof SandboxNetworkRequestSchema>;

/** Upper bound of timeout_s and idle_timeout_s: 7 days. */
export const MAX_SANDBOX_LIFETIME_S = 7 * 24 * 3600;

export const CreateSandboxRequestSchema = z
  .strictObject({
    image: z.string().min(1).max(1024).describe('OCI image reference (pulled on the chosen host first)'),
    cpus: z.number().int().min(1).max(64).default(SANDBOX_DEFAULTS.cpus).describe('virtual CPUs'),
    ram: z.number().int().min(64).max(1024 * 1024).default(SANDBOX_DEFAULTS.ram).describe('guest memory, MiB'),
    disk: z
      .number()
      .int()
      .min(64)
      .max(1024 * 1024)
      .default(SANDBOX_DEFAULTS.disk)
      .describe('writable disk, MiB: sparse (blocks are used as the guest writes), but the host admits a sandbox only if this much would fit'),
    env: EnvMapSchema.optional().describe('environment of every exec (over the image Env; an exec may override)'),
    workdir: GuestPathSchema.optional().describe('default working directory of execs (default: the image WorkingDir, else /)'),
    user: GuestUserSchema.optional().describe('default user of execs (default: the image User, else root)'),
    timeout_s: z
      .number()
      .int()
      .min(1)
      .max(MAX_SANDBOX_LIFETIME_S)
      .default(SANDBOX_DEFAULTS.timeout_s)
      .describe('maximum life in seconds, counted from creation; then the sandbox ends as expired'),
    idle_timeout_s: z
      .number()
      .int()
      .min(1)
      .max(MAX_SANDBOX_LIFETIME_S)
      .optional()
      .describe('end as expired after this many seconds without an exec or file call (default: no idle limit); see on_idle'),
    on_idle: z
      .enum(['expire', 'pause'])
      .default('expire')
      .describe('what idle_timeout_s does: expire (end it, its disk deleted) or pause (save it to disk; resume continues it)'),
    network: SandboxNetworkRequestSchema.default(SANDBOX_DEFAULTS.network),
    cold: z
      .boolean()
      .default(false)
      .describe('boot the guest kernel even when the image has a template to restore from (docs/SNAPSHOTS.md); default false'),
  })
  .meta({ id: 'CreateSandboxRequest' });
export type CreateSandboxRequest = z.input<typeof CreateSandboxRequestSchema>;

export const CreateSandboxQuerySchema = z.strictObject({
  wait: z
    .enum(['true', 'false', '1', '0'])
    .transform((v) => v === 'true' || v === '1')
    .optional()
    .describe('default true: answer 201 once the sandbox accepts commands; false: 202 at once with status creating'),
});

// --- the sandbox object --------------------------------------------------------

export const SandboxSchema = z
  .object({
    id: SandboxIdSchema,
    status: SandboxStatusSchema,
    host: z.string().nullable().describe('id of the worker host it is placed on'),
    image: z.string().describe('the reference as requested'),
    image_digest: z.string().optional().describe('manifest digest of the pulled image'),
    cpus: z.number().int(),
    ram: z.number().int().describe('MiB'),
    disk: z.number().int().describe('writable disk, MiB'),
    env: z.record(z.string(), z.string()),
    workdir: z.string().optional(),
    user: z.string().optional(),
    network: SandboxNetworkModeSchema,
    network_allow: z
      .array(z.string())
      .optional()
      .describe('only with an allow-list: the destinations it may reach, in normal form (lowercase names)'),
    timeout_s: z.number().int(),
    idle_timeout_s: z.number().int().nullable(),
    on_idle: z.enum(['expire', 'pause']).describe('what idle_timeout_s does'),
    paused_at: z.string().optional().describe('when it was paused (while paused)'),
    fork_of: SandboxIdSchema.optional().describe('the sandbox it was forked from'),
    created_at: z.string().describe('ISO-8601'),
    started_at: z.string().optional().describe('when it began accepting commands'),
    ended_at: z.string().optional(),
    expires_at: z.string().describe('created_at + timeout_s'),
    last_activity_at: z.string().describe('the last exec or file call (idle_timeout_s counts from here)'),
    boot: z
      .object({
        from: z
          .enum(['template', 'cold', 'paused', 'fork'])
          .describe('template: restored from the image\'s saved VM; cold: the guest kernel booted; paused: resumed from its own pause; fork: a copy of another sandbox'),
        reason: z.string().describe('why (e.g. no template yet, one was saved, a cold boot was asked for)'),
      })
      .optional()
      .describe('how its VM last started (docs/SNAPSHOTS.md), once running'),
    reason: z.string().optional().describe('why it ended (expired, deleted, lost, failed)'),
    code: z.string().optional().describe('error code of a failed or lost sandbox (docs/ERRORS.md), e.g. the pull failure'),
  })
  .meta({ id: 'Sandbox' });
export type Sandbox = z.infer<typeof SandboxSchema>;

export const SandboxParamsSchema = z.strictObject({ id: SandboxIdSchema });

export const ListSandboxesQuerySchema = z.strictObject({
  status: z
    .preprocess(
      (v) => (typeof v === 'string' ? v.split(',') : Array.isArray(v) ? v.flatMap((x) => (typeof x === 'string' ? x.split(',') : [x])) : v),
      z.array(SandboxStatusSchema).max(SANDBOX_STATUSES.length),
    )
    .optional()
    .describe('only these statuses (comma-separated or repeated)'),
});

export const SandboxListSchema = z.object({ sandboxes: z.array(SandboxSchema).describe('oldest first') }).meta({ id: 'SandboxList' });

/** Most children one fork call makes. */
export const MAX_FORK_COUNT = 16;

export const ForkSandboxRequestSchema = z
  .strictObject({
    count: z.number().int().min(1).max(MAX_FORK_COUNT).default(1).describe(`how many copies (1..${MAX_FORK_COUNT})`),
  })
  .meta({ id: 'ForkSandboxRequest' });
export type ForkSandboxRequest = z.input<typeof ForkSandboxRequestSchema>;

export const ForkSandboxResponseSchema = z
  .object({ sandboxes: z.array(SandboxSchema).describe('the new sandboxes, running, in the order they were made') })
  .meta({ id: 'ForkSandboxResponse' });
export type SandboxList = z.infer<typeof SandboxListSchema>;

// --- exec (sandboxes and services) -------------------------------------------

/** Max timeout of one exec: 1 day. */
export const MAX_EXEC_TIMEOUT_S = 24 * 3600;

const ExecCommonFields = {
  cmd: z
    .array(z.string().max(128 * 1024).refine(noNul, 'must not contain a NUL byte'))
    .min(1, 'cmd needs at least the program')
    .max(4096)
    .describe('program and arguments; no shell (use ["sh", "-c", "..."] for one); the program is looked up in PATH'),
  env: EnvMapSchema.optional().describe("over the sandbox's environment"),
  cwd: GuestPathSchema.optional().describe("working directory (default: the sandbox's workdir); a missing one exits 125"),
  user: GuestUserSchema.optional(),
  timeout_s: z
    .number()
    .positive()
    .max(MAX_EXEC_TIMEOUT_S)
    .optional()
    .describe('kill the whole process tree after this many seconds and answer timed_out: true (exit code 137)'),
};

export const ExecRequestSchema = z
  .strictObject({
    ...ExecCommonFields,
    stdin: z.string().optional().describe('written to the process, then stdin is closed (default: stdin is /dev/null)'),
    encoding: ByteEncodingSchema.default('utf8').describe('how stdin, stdout, stderr and streamed data are carried: utf8 text or base64'),
  })
  .meta({ id: 'ExecRequest' });
export type ExecRequest = z.input<typeof ExecRequestSchema>;

export const ExecResultSchema = z
  .object({
    exit_code: z.number().int().describe('exit status, or 128+N when killed by signal N; 125 bad cwd/user, 126 not executable, 127 not found'),
    stdout: z.string(),
    stderr: z.string(),
    duration_ms: z.number(),
    timed_out: z.boolean(),
    signal: z.number().int().nullable().describe('the signal that ended it, or null'),
    truncated: z
      .object({ stdout: z.boolean(), stderr: z.boolean() })
      .describe('output beyond the buffered limit (16 MiB per stream) was read and dropped; stream it to get everything'),
    spawn_error: z.string().optional().describe('why it could not start (with exit codes 125/126/127)'),
  })
  .meta({ id: 'ExecResult' });
export type ExecResult = z.infer<typeof ExecResultSchema>;

/** Content type of a streamed exec (request it with Accept). */
export const NDJSON = 'application/x-ndjson';

/** One line of a streamed exec: output chunks in order, then exactly one final line (exit or error). */
export const ExecOutputLineSchema = z.object({
  stream: z.enum(['stdout', 'stderr']),
  data: z.string().describe('a chunk as the guest wrote it (utf8, or base64 with encoding=base64)'),
});
export const ExecExitLineSchema = z.object({
  exit_code: z.number().int(),
  signal: z.number().int().nullable(),
  timed_out: z.boolean(),
  duration_ms: z.number(),
  spawn_error: z.string().optional(),
});
export const ExecErrorLineSchema = z.object({
  error: z.object({ code: z.string(), message: z.string() }).describe('the call failed after the response started (e.g. MC_SANDBOX_LOST)'),
});
export const ExecStreamLineSchema = z.union([ExecOutputLineSchema, ExecExitLineSchema, ExecErrorLineSchema]).meta({ id: 'ExecStreamLine' });
export type ExecStreamLine = z.infer<typeof ExecStreamLineSchema>;

// --- interactive exec over WebSocket -------------------------------------------

/** First frame of the client on GET …/exec/ws (text, JSON). */
export const ExecSessionStartSchema = z
  .strictObject({
    ...ExecCommonFields,
    tty: z
      .object({ cols: z.number().int().min(1).max(1000), rows: z.number().int().min(1).max(1000) })
      .optional()
      .describe('a pseudo-terminal of this size: stdout and stderr arrive merged on stdout'),
    stdin: z.boolean().default(true).describe('give the process a stdin pipe fed by the client (default true)'),
  })
  .meta({ id: 'ExecSessionStart' });
export type ExecSessionStart = z.input<typeof ExecSessionStartSchema>;

/** Text frames of the client after the start frame (binary frames are raw stdin bytes). */
export const ExecSessionClientMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('stdin'), data: z.string().describe('UTF-8 text for stdin') }),
  z.strictObject({ type: z.literal('eof') }).describe('close stdin'),
  z.strictObject({ type: z.literal('resize'), cols: z.number().int().min(1).max(1000), rows: z.number().int().min(1).max(1000) }),
  z.strictObject({
    type: z.literal('signal'),
    signal: z.union([z.string().regex(/^SIG[A-Z0-9]+$/), z.number().int().min(1).max(64)]),
    target: z.enum(['process', 'group', 'tree']).default('process'),
  }),
]);
export type ExecSessionClientMessage = z.input<typeof ExecSessionClientMessageSchema>;

/** Binary frames of the server: this first byte names the stream, the rest is the data. */
export const WS_STREAM_STDOUT = 1;
export const WS_STREAM_STDERR = 2;

/** Text frames of the server. `exit` or `error` is the last; the server then closes the socket. */
export const ExecSessionServerMessageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('started'), pid: z.number().int() }),
  z.object({
    type: z.literal('exit'),
    exit_code: z.number().int(),
    signal: z.number().int().nullable(),
    timed_out: z.boolean(),
    duration_ms: z.number(),
    spawn_error: z.string().optional(),
  }),
  z.object({ type: z.literal('error'), code: z.string(), message: z.string() }),
]);
export type ExecSessionServerMessage = z.infer<typeof ExecSessionServerMessageSchema>;

// --- files (sandboxes and services) ---------------------------------------------

/** Content type of the directory form (PUT extracts into `path`, GET archives `path`). */
export const TAR = 'application/x-tar';

export const FilesQuerySchema = z.strictObject({
  path: GuestPathSchema.describe('absolute guest path: the file, or the directory with format=tar'),
  format: z
    .enum(['raw', 'tar'])
    .optional()
    .describe('raw (default): one file as raw bytes; tar: a directory as a tar stream (PUT extracts into path, creating it)'),
  mode: z
    .string()
    .regex(/^0?[0-7]{3,4}$/, 'octal permission bits, e.g. 644 or 0755')
    .optional()
    .describe('PUT raw: permission bits of the file (default 0644)'),
  owner: GuestUserSchema.optional().describe('PUT raw: owner of the file (default root)'),
});
export type FilesQuery = z.input<typeof FilesQuerySchema>;

export const FileWriteResultSchema = z
  .object({
    path: z.string(),
    size: z.number().int().describe('bytes written (raw), or bytes of tar received (tar)'),
    format: z.enum(['raw', 'tar']),
  })
  .meta({ id: 'FileWriteResult' });
export type FileWriteResult = z.infer<typeof FileWriteResultSchema>;

/** Headers of GET …/files (raw): the file's metadata in the guest. */
export const FILE_HEADERS = {
  size: 'x-monocore-file-size',
  mode: 'x-monocore-file-mode',
  mtime: 'x-monocore-file-mtime',
} as const;

// --- services ------------------------------------------------------------------

export const ServiceParamsSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'a service name (lowercase letters, digits and "-")'),
});
