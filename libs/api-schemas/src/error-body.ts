import { z } from 'zod';

/** The error body every route answers with (apps/api/src/plugins/error-handler.ts). */
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
export type ErrorBody = z.infer<typeof ErrorBodySchema>;
