import type { FastifyInstance } from 'fastify';
import type { Queue } from 'bullmq';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { authHook } from './auth.js';

export const BULL_BOARD_PATH = '/admin/queues';

/** Lets the owner of the queues (startApi) change the board's list as queues appear. */
export interface BullBoardControl {
  /** Replaces the listed queues (every queue of a flow must be listed for its tree to show). */
  setQueues(queues: readonly Queue[]): void;
}

/**
 * Bull Board has no auth of its own: it lives in its own encapsulated plugin
 * whose onRequest hook checks the token (docs/ORCHESTRATION.md, "Other BullMQ
 * behaviour"; as in bull-board's with-fastify-auth example), so nothing under
 * /admin/queues is served without it.
 */
export async function registerBullBoard(
  app: FastifyInstance,
  options: {
    queues: readonly Queue[];
    token: string | undefined;
    localToken?: string | undefined;
    /** Called (at most every 2 s) on dashboard requests to pick up queues that appeared since. */
    discover?: () => Promise<readonly Queue[]>;
  },
): Promise<BullBoardControl> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  const board = createBullBoard({
    queues: options.queues.map((q) => new BullMQAdapter(q)),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'monocore' } },
  });
  const control: BullBoardControl = {
    setQueues(queues) {
      board.replaceQueues(queues.map((q) => new BullMQAdapter(q)));
    },
  };
  let lastDiscovery = Date.now();
  const discover = options.discover;
  await app.register(async (scope) => {
    if (options.token !== undefined) scope.addHook('onRequest', authHook({ token: options.token, ...(options.localToken !== undefined ? { localToken: options.localToken } : {}) }));
    if (discover) {
      scope.addHook('onRequest', async (request) => {
        if (Date.now() - lastDiscovery < 2000) return;
        lastDiscovery = Date.now();
        try {
          control.setQueues(await discover());
        } catch (err) {
          request.log.warn({ err }, 'queue discovery failed; Bull Board shows the queues known so far');
        }
      });
    }
    await scope.register(serverAdapter.registerPlugin(), { prefix: BULL_BOARD_PATH });
  });
  return control;
}
