import { z } from 'zod';
import { ErrorBodySchema } from '@monocore/api-schemas';

/** The error body every route answers with (see plugins/error-handler.ts); its one home is @monocore/api-schemas. */
export { ErrorBodySchema };

/** `a,b` or repeated `?x=a&x=b` → ['a','b']. */
export const NameList = z
  .preprocess(
    (v) => (typeof v === 'string' ? v.split(',') : Array.isArray(v) ? v.flatMap((x) => (typeof x === 'string' ? x.split(',') : [x])) : v),
    z.array(z.string().trim().min(1).max(63)).max(1024),
  )
  .describe('comma-separated names, or the parameter repeated');

/** `true|false|1|0` in a query string. */
export const QueryBool = z
  .enum(['true', 'false', '1', '0'])
  .transform((v) => v === 'true' || v === '1');

/** Selects what /down and /remove act on: everything, one group, or named services. */
export const SelectionSchema = z
  .strictObject({
    group: z.string().min(1).max(63).optional().describe('only the services of this group'),
    services: z.array(z.string().min(1).max(63)).max(1024).optional().describe('only these services'),
  })
  .meta({ id: 'Selection' });

export const errorResponses = {
  400: ErrorBodySchema,
  401: ErrorBodySchema,
  404: ErrorBodySchema,
  500: ErrorBodySchema,
} as const;
