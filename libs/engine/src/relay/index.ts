// Public surface of the relay domain (API ↔ worker calls through Redis): list exports by name.
export {
  RELAY_WINDOW_BYTES,
  RELAY_CREDIT_EVERY_BYTES,
  RELAY_MAX_CHUNK_BYTES,
  RELAY_STALE_CALL_MS,
  RelayTargetSchema,
  RelayOpSchema,
  describeTarget,
} from './relay-protocol.js';
export type { RelayTarget, RelayOp, OpenMeta, EndMeta, ExitMeta } from './relay-protocol.js';
export { Inbox } from './inbox.js';
export type { InboxOptions } from './inbox.js';
export { appendEntry } from './append-entry.js';
export type { AppendOptions } from './append-entry.js';
export { RelayClient, RelayCall } from './relay-client.js';
export type { RelayClientOptions, CallInput, OutputChunk } from './relay-client.js';
export { RelayServer } from './relay-server.js';
export type { RelayHost, RelayServerOptions } from './relay-server.js';
