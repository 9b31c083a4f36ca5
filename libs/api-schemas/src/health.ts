import { z } from 'zod';

/** GET /healthz: 200 when Redis answers (503 with the error body otherwise). */
export const HealthSchema = z.object({ status: z.literal('ok'), redis: z.literal('up') });
export type Health = z.infer<typeof HealthSchema>;
