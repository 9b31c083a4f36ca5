/**
 * Header carrying the local credential that `monocore serve` writes to
 * MONOCORE_HOME/run/api-local.token (0600). Only a process of the same user on
 * the same machine can read it, so a request bearing it comes from a config
 * author working locally: it is authenticated and trusted with host volumes,
 * like a local monocore.toml. REST clients without it get the volume policy.
 */
export const LOCAL_TOKEN_HEADER = 'x-monocore-local-token';
