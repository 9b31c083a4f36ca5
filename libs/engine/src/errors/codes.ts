/**
 * Every stable error code, with the HTTP status the API maps it to and whether
 * retrying the failed job can help. docs/ERRORS.md documents each one; a test
 * (errors.test.ts) fails when a code is missing there.
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
  MC_API_NOT_FOUND: code(404, false, 'no such route'),
  MC_API_BODY_TOO_LARGE: code(413, false, 'the request body is larger than the configured limit'),
  MC_API_VOLUME_NOT_ALLOWED: code(400, false, 'a host volume path in a REST body lies outside the allowed roots'),
  MC_API_UNREACHABLE: code(503, true, 'the CLI cannot reach the monocore API (is `monocore serve` running?)'),
  MC_API_REDIS_UNAVAILABLE: code(503, true, 'Redis is not reachable from the API'),

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
  MC_OCI_STORE_BUSY: code(503, true, 'another process held the content-store lock for a blob for too long'),
  MC_OCI_IMAGE_NOT_FOUND: code(404, false, 'no local image matches this reference or digest'),
  MC_OCI_INVALID_LAYOUT: code(400, false, 'an OCI image layout directory or oci-archive is malformed (details name the file)'),

  // --- rootfs (MC_ROOTFS_*) ---------------------------------------------------

  // --- vm (MC_VM_*) -----------------------------------------------------------

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
  MC_STATE_INVALID_TRANSITION: code(409, false, 'a service state change not allowed by the state machine; names both states'),
  MC_STATE_FENCED: code(409, false, 'a host acted on a service it no longer owns (stale lease or epoch); the action was refused'),
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ErrorCodes;
