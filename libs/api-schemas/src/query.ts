import { z } from 'zod';

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
