// Where the API is when nothing is said ($MONOCORE_API_PORT, 3456): the SDK's rule,
// shared by `serve` (where it listens), the local daemon and every API command.
export { DEFAULT_API_PORT, defaultApiPort, defaultApiUrl } from '@monocore/client';
