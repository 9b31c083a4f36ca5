import { z } from 'zod';

/** The error body every route answers with (see plugins/error-handler.ts). */
export const ErrorBodySchema = z
  .object({
    code: z.string().describe('stable error code, documented in docs/ERRORS.md'),
    message: z.string().describe('human-readable message naming the offending input'),
    details: z.record(z.string(), z.unknown()),
    issues: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .describe('one entry per problem, for validation errors'),
  })
  .meta({ id: 'Error' });

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
