// Public surface of @monocore/api: build the Fastify app around an orchestrator,
// or start the whole API (orchestrator + Redis + listen) in one call.
export { buildApi, DEFAULT_BODY_LIMIT, type BuildApiOptions } from './build-api.js';
export { startApi, isLoopback, DEFAULT_API_HOST, DEFAULT_API_PORT, type StartApiOptions, type RunningApi } from './start-api.js';
export { VolumePolicy } from './volume-policy.js';
export { BULL_BOARD_PATH, type BullBoardControl } from './plugins/bull-board.js';
export { LOCAL_TOKEN_HEADER } from './plugins/auth.js';
export type { ErrorBody } from './plugins/error-handler.js';
