// Public surface of the orchestration domain: list exports by name.
export { QUEUE_PREFIX, QueueNames, PullJobDataSchema } from './queues.js';
export type { PullJobData, PullJobResult } from './queues.js';
