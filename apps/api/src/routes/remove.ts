import { stopRoute } from './down.js';

/** POST /remove: stop if needed, then delete the services' writable layer and state (same body as /down). */
export const removeRoutes = stopRoute('remove');
