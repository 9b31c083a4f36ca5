/**
 * Every stable error code, with the HTTP status the API maps it to and whether
 * retrying the failed job can help. docs/ERRORS.md documents each one; a test
 * (codes.test.ts) fails when a code is missing there, when the document names a
 * code that is gone, or when a row's status or retryability differs from here.
 *
 * Each domain owns its own section; keep them sorted by domain prefix.
 */
interface CodeInfo {
  status: number;
  retryable: boolean;
  summary: string;
}

const code = (status: number, retryable: boolean, summary: string): CodeInfo => ({ status, retryable, summary });

export const ErrorCodes = {
  // --- generic ---------------------------------------------------------------
  MC_INTERNAL: code(500, true, 'an unexpected internal error'),
  MC_USAGE: code(400, false, 'a command-line usage error'),
  MC_NOT_IMPLEMENTED: code(501, false, 'the feature is not implemented yet'),

  // --- api (MC_API_*) ----------------------------------------------------------
  MC_API_BAD_REQUEST: code(400, false, 'the request body, query or path parameters are invalid (see details.issues)'),
  MC_API_UNAUTHORIZED: code(401, false, 'a bearer token is required and was missing or wrong'),
  MC_API_FORBIDDEN: code(403, false, 'a cross-origin browser request, or a Host header that is not the loopback the API listens on (DNS rebinding)'),
  MC_API_NOT_FOUND: code(404, false, 'no such route'),
  MC_API_BODY_TOO_LARGE: code(413, false, 'the request body is larger than the configured limit'),
  MC_API_VOLUME_NOT_ALLOWED: code(400, false, 'a host volume path in a REST body lies outside the allowed roots'),
  MC_API_PORT_NOT_ALLOWED: code(400, false, 'a host port in a REST body lies outside the ports REST callers may publish (MONOCORE_API_PORTS)'),
  MC_API_UNREACHABLE: code(503, true, 'a client (the CLI, the SDK) cannot reach the monocore API (is `monocore serve` running?), or the connection was cut mid-answer'),
  MC_API_BAD_RESPONSE: code(502, false, "the API's answer does not match its schema (another monocore version, or a proxy in between); raised by the SDK"),
  MC_API_REDIS_UNAVAILABLE: code(503, true, 'Redis is not reachable from the API'),

  // --- daemon (MC_DAEMON_*): the local daemon the CLI starts by itself ----------
  MC_DAEMON_START_FAILED: code(503, true, 'the local daemon the CLI started did not come up (the message has the tail of its log)'),
  MC_DAEMON_STOP_FAILED: code(500, false, 'the local daemon, or a process it left, could not be stopped'),

  // --- config (MC_CONFIG_*) ---------------------------------------------------
  MC_CONFIG_INVALID: code(400, false, 'the configuration has one or more problems (see details.issues)'),
  MC_CONFIG_FILE_NOT_FOUND: code(400, false, 'the configuration file does not exist or cannot be read'),
  MC_PLAN_UNKNOWN_SELECTION: code(404, false, 'a plan selected a service or group the configuration does not define'),

  // --- oci (MC_OCI_*) ---------------------------------------------------------
  MC_OCI_INVALID_REFERENCE: code(400, false, 'an image reference does not parse (registry, repository, tag or digest)'),
  MC_OCI_UNAUTHORIZED: code(401, false, 'the registry refused the credentials (or anonymous access) for this repository'),
  MC_OCI_MANIFEST_NOT_FOUND: code(404, false, 'the registry has no manifest for this reference (tag or digest)'),
  MC_OCI_BLOB_NOT_FOUND: code(404, false, 'the registry has no blob (layer or config) with this digest'),
  MC_OCI_DIGEST_MISMATCH: code(502, false, 'downloaded or imported content does not hash to its digest; nothing was stored'),
  MC_OCI_SIZE_MISMATCH: code(502, false, 'downloaded or imported content does not have the size its descriptor declares'),
  MC_OCI_UNSUPPORTED_MEDIA_TYPE: code(415, false, 'a manifest, config or layer has a media type monocore cannot use'),
  MC_OCI_INVALID_MANIFEST: code(502, false, 'a manifest, index or image config is not valid JSON of the expected shape'),
  MC_OCI_NO_MATCHING_PLATFORM: code(404, false, 'the image index has no entry for the requested platform (details.available lists them)'),
  MC_OCI_INVALID_PLATFORM: code(400, false, 'a platform string is not "os/arch[/variant]"'),
  MC_OCI_REGISTRY_UNREACHABLE: code(503, true, 'the registry could not be reached (connection refused, DNS, TLS or timeout)'),
  MC_OCI_TOO_MANY_RETRIES: code(503, true, 'the registry kept failing (5xx, 429 or dropped connections) after every retry'),
  MC_OCI_REGISTRY_ERROR: code(502, false, 'the registry answered with an unexpected status or malformed response'),
  MC_OCI_INSECURE_REGISTRY: code(400, false, 'plain HTTP to a non-loopback registry was refused (configure it as insecure to allow)'),
  MC_OCI_REGISTRY_REFUSED: code(400, false, 'a REST caller named an image whose registry is (or resolves or redirects to) a link-local, loopback or private address not allowed by MONOCORE_API_REGISTRIES'),
  MC_OCI_STORE_BUSY: code(503, true, 'another process held the content-store lock for a blob for too long'),
  MC_OCI_IMAGE_NOT_FOUND: code(404, false, 'no local image matches this reference or digest'),
  MC_OCI_INVALID_LAYOUT: code(400, false, 'an OCI image layout directory or oci-archive is malformed (details name the file)'),

  // --- rootfs (MC_ROOTFS_*) ---------------------------------------------------
  MC_ROOTFS_PATH_ESCAPE: code(422, false, 'a layer entry tried to reach outside the rootfs (".." name, hardlink or whiteout escape); the layer was rejected'),
  MC_ROOTFS_BAD_LAYER: code(422, false, 'a layer is not a valid (compressed) tar: corrupt stream, wrong magic bytes for its media type, bad entry'),
  MC_ROOTFS_UNSUPPORTED_MEDIA_TYPE: code(415, false, 'a layer media type the unpacker does not handle (e.g. encrypted layers)'),
  MC_ROOTFS_LAYER_MISSING: code(500, true, 'a layer blob file to unpack does not exist or cannot be read'),
  MC_ROOTFS_INVALID_ARGUMENT: code(400, false, 'an invalid argument to the rootfs API (image id, layer list)'),
  MC_ROOTFS_UNPACK_FAILED: code(500, true, 'unpacking failed on the host side (disk full, permissions, I/O error, lock)'),
  MC_ROOTFS_BLOCK_BUILD_FAILED: code(500, true, "building an image's read-only block filesystem (mkfs.erofs) failed: tool missing, disk full, I/O error"),

  // --- vm (MC_VM_*) -----------------------------------------------------------
  MC_VM_KERNEL_NOT_FOUND: code(503, false, 'no guest kernel found (run scripts/guest-kernel.sh or set MONOCORE_KERNEL_DIR)'),
  MC_VM_INITRAMFS_BUILD_FAILED: code(500, false, 'building the guest initramfs (init, busybox, kernel modules) failed'),
  MC_VM_BACKEND_UNAVAILABLE: code(503, false, 'the hypervisor backend cannot run on this host (the message says why)'),
  MC_VM_SPEC_INVALID: code(400, false, 'a VM spec field is invalid (details.field names it)'),
  MC_VM_NETWORK_UNSUPPORTED: code(501, false, 'the requested guest network is not supported by this backend'),
  MC_VM_NETWORK_FAILED: code(500, true, 'setting up the guest network failed'),
  MC_VM_EGRESS_ALLOW_INVALID: code(400, false, 'an egress allow-list entry is not a DNS name, *.suffix, IPv4 address or IPv4 CIDR range, is a duplicate, lies in a range guests never reach, or the list is empty or given without outbound access (details.field names it)'),
  MC_VM_DISK_PREPARE_FAILED: code(500, true, 'the per-service writable disk could not be created'),
  MC_VM_DISK_RESERVE: code(507, true, "a VM was not started: its disk and the running VMs' disks could grow past the host's free disk minus its reserve"),
  MC_VM_START_FAILED: code(500, true, 'the hypervisor process could not be started or died during boot'),
  MC_VM_BOOT_TIMEOUT: code(504, true, 'the guest did not report its command started in time (details.consoleTail)'),
  MC_VM_LIBKRUN_NOT_FOUND: code(503, false, 'libkrun could not be loaded (install it or set MONOCORE_LIBKRUN_PATH)'),
  MC_VM_LIBKRUN_SYMBOL_MISSING: code(503, false, 'the loaded libkrun lacks a function monocore needs (too old or not libkrun)'),
  MC_VM_LIBKRUN_CALL_FAILED: code(500, false, 'a krun_* call returned a negative errno (details.fn, details.errno)'),
  MC_VM_LIBKRUN_INVALID_ARGUMENT: code(400, false, 'a value cannot be passed to libkrun (NUL byte, out-of-range integer)'),
  MC_VM_LIBKRUN_SETUP_FAILED: code(500, true, 'the libkrun VM process failed before the guest started (mounts, config)'),
  MC_VM_LIBKRUN_UNSUPPORTED: code(501, false, 'the VM spec asks for something the libkrun backend cannot do safely or faithfully'),
  MC_VM_SNAPSHOT_FAILED: code(500, true, 'saving or restoring a VM state failed (QMP, migration, a snapshot file that does not check out); details say which step'),
  MC_VM_SNAPSHOT_UNSUPPORTED: code(501, false, 'this backend cannot save, pause or resume VMs (libkrun)'),
  MC_VM_AGENT_UNSUPPORTED: code(501, false, 'this backend has no guest agent (libkrun): no exec, files or identity refresh in its VMs'),

  // --- guest agent (MC_AGENT_*, docs/AGENT.md) ----------------------------------
  MC_AGENT_PROTOCOL_ERROR: code(502, false, 'the guest agent sent a malformed, oversized or unexpected frame (details.reason); the session was ended'),
  MC_AGENT_HANDSHAKE_FAILED: code(502, true, 'the guest agent did not answer the handshake in time (or the VM ended first)'),
  MC_AGENT_VERSION_MISMATCH: code(502, false, 'the guest agent speaks no protocol version the host speaks'),
  MC_AGENT_UNRESPONSIVE: code(504, true, 'the guest agent stopped answering pings; the session was ended'),
  MC_AGENT_DISCONNECTED: code(503, true, 'the agent session ended (VM stopped or restored, host closed it) before the call finished'),
  MC_AGENT_REQUEST_INVALID: code(400, false, 'an exec or file request is invalid (relative path, NUL byte, empty argv, too large); details.field names it'),
  MC_AGENT_TOO_MANY_CHANNELS: code(429, true, 'too many concurrent execs and file transfers on one agent session'),
  MC_AGENT_FILE_NOT_FOUND: code(404, false, 'the guest path does not exist'),
  MC_AGENT_FILE_ERROR: code(422, false, 'a guest file operation failed (is a directory, not a regular file, permission, no space); details.errno'),
  MC_AGENT_FILE_TOO_LARGE: code(413, false, 'an upload exceeded its size limit; nothing was left in the guest'),
  MC_AGENT_GUEST_ERROR: code(500, false, 'the guest agent reported an error the host has no specific code for (details.errno)'),

  // --- orchestration and state (MC_ORCH_*, MC_STATE_*) -------------------------
  MC_ORCH_NO_HOSTS: code(503, true, 'no worker host is registered (start monocore-worker or monocore serve)'),
  MC_ORCH_NO_CAPACITY: code(503, true, 'no registered host has enough free cpus/ram for a service or group; details name it'),
  MC_ORCH_TIMEOUT: code(504, true, 'waiting for a deployment timed out; the deployment goes on'),
  MC_ORCH_DEPLOYMENT_NOT_FOUND: code(404, false, 'no deployment with this id is recorded'),
  MC_ORCH_UNKNOWN_SERVICE: code(404, false, 'no service with this name is recorded in Redis'),
  MC_ORCH_BAD_JOB: code(500, false, 'a queued job payload failed validation when a worker dequeued it'),
  MC_ORCH_BOOT_FAILED: code(500, true, 'a service failed to boot (its VM could not start or exited before reporting started)'),
  MC_ORCH_DEPENDENCY_FAILED: code(424, false, 'a dependency failed or is blocked, so this service was not started (status blocked)'),
  MC_ORCH_NO_IMAGE: code(400, false, 'a service has no base image and the worker backend needs one'),
  MC_ORCH_NO_COMMAND: code(400, false, 'a service has no command and its image has no Entrypoint/Cmd'),
  MC_ORCH_LEASE_EXPIRED: code(409, true, 'a host could not renew a service\'s lease in time and stopped its VM (fenced); it boots again once Redis confirms the service is still there'),
  MC_ORCH_SERVICE_NOT_RUNNING: code(409, false, 'exec or files on a service that is not running (details.status)'),
  MC_STATE_INVALID_TRANSITION: code(409, false, 'a service state change not allowed by the state machine; names both states'),
  MC_STATE_FENCED: code(409, false, 'a host acted on a service it no longer owns (stale lease or epoch); the action was refused'),

  // --- sandboxes and exec (MC_SANDBOX_*, MC_EXEC_*; docs/API.md "Sandboxes") ---
  MC_SANDBOX_NOT_FOUND: code(404, false, 'no sandbox with this id (never created, or ended longer ago than the retention period)'),
  MC_SANDBOX_NOT_RUNNING: code(409, false, 'exec or files on a sandbox that is still creating or has ended (details.status, details.reason)'),
  MC_SANDBOX_NOT_PAUSED: code(409, false, 'resume of a sandbox that is not paused (details.status)'),
  MC_SANDBOX_LOST: code(410, false, 'the sandbox\'s VM or its worker host died (before or during the call): its state is gone and it is not recreated'),
  MC_EXEC_HOST_LOST: code(503, true, 'the worker host running the service stopped answering during an exec or file call (the service is rescheduled elsewhere)'),
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ErrorCodes;
