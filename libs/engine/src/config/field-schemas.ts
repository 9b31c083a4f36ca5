import { z } from 'zod';
import { isMonocoreError } from '../errors/index.js';
import { parseImageReference } from '../oci/image-reference.js';
import { checkEgressAllowEntry, EMPTY_ALLOW_LIST } from '../vm/egress-allow-list.js';
import { tryParseEnvVar } from './env-var.js';
import { showValue } from './config-issue.js';
import { ConfigLimits } from './limits.js';
import { ENTRY_NAME_PATTERN, NAME_PATTERN, checkName } from './names.js';
import { tryParsePortMapping } from './port-mapping.js';
import { checkPath, tryParseVolumeMapping } from './volume-mapping.js';

/**
 * Leaf schemas shared by ServiceSchema and GroupSchema. Each leaf stays a plain
 * string/number in the output (no transforms), so the same schema serves as
 * TOML model, REST body and JSON Schema; the parsed forms come from resolveService.
 */

const boundedString = () =>
  z.string().max(ConfigLimits.maxStringLength, `must be at most ${ConfigLimits.maxStringLength} characters`);

export const boundedList = <T extends z.ZodType>(item: T) =>
  z.array(item).max(ConfigLimits.maxListLength, `must have at most ${ConfigLimits.maxListLength} entries`);

function fromChecker(check: (s: string) => string | undefined) {
  return (value: string, ctx: z.RefinementCtx) => {
    const problem = check(value);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  };
}

/** Service and group names (DNS labels). */
export const NameSchema = z
  .string()
  .superRefine(fromChecker((s) => checkName(s, NAME_PATTERN)))
  .meta({ pattern: NAME_PATTERN.source, maxLength: ConfigLimits.nameMaxLength });
/** Group volume and group env names. */
export const EntryNameSchema = z
  .string()
  .superRefine(fromChecker((s) => checkName(s, ENTRY_NAME_PATTERN)))
  .meta({ pattern: ENTRY_NAME_PATTERN.source, maxLength: ConfigLimits.nameMaxLength });

export const ImageReferenceStringSchema = z.string().superRefine(
  fromChecker((s) => {
    try {
      parseImageReference(s);
      return undefined;
    } catch (err) {
      if (isMonocoreError(err)) return err.message;
      throw err;
    }
  }),
);

export const PortSchema = z
  .string()
  .superRefine(
    fromChecker((s) => {
      const r = tryParsePortMapping(s);
      return r.ok ? undefined : r.error;
    }),
  )
  .meta({ pattern: '^[0-9]{1,5}(:[0-9]{1,5})?$', examples: ['8080', '8080:80'] });

export const VolumeSchema = z.string().superRefine(
  fromChecker((s) => {
    const r = tryParseVolumeMapping(s);
    return r.ok ? undefined : r.error;
  }),
);

/** group_volumes[].path: the host side may be relative to the group volume's base path. */
export const GroupVolumeMountSchema = z.string().superRefine(
  fromChecker((s) => {
    const r = tryParseVolumeMapping(s, { relativeHost: true });
    return r.ok ? undefined : r.error;
  }),
);

export const AbsolutePathSchema = boundedString().superRefine(fromChecker((s) => checkPath(s, 'path')));

export const EnvSchema = boundedString().superRefine(
  fromChecker((s) => {
    const r = tryParseEnvVar(s);
    return r.ok ? undefined : r.error;
  }),
);

export const intInRange = (min: number, max: number) => {
  // One message for every way to miss (wrong type, fraction, too small, too big),
  // while z.int().min().max() still shows the bounds in the JSON Schema / OpenAPI.
  const error = (iss: { input?: unknown }) => `must be an integer in ${min}..${max}, got ${showValue(iss.input)}`;
  return z.int({ error }).min(min, { error }).max(max, { error });
};

export const CommandSchema = boundedString().min(1, 'must not be empty');
export const ArgSchema = boundedString();

/** One egress allow-list entry: a DNS name, `*.suffix`, an IPv4 address or an IPv4 CIDR range. */
export const EgressAllowEntrySchema = boundedString()
  .superRefine(fromChecker(checkEgressAllowEntry))
  .meta({ examples: ['pypi.org', '*.githubusercontent.com', '203.0.113.7', '203.0.113.0/24'] });

/**
 * A whole allow-list, for every boundary that takes one (a group's `network.allow`,
 * a sandbox's REST body): at least one entry; duplicates are a cross-field rule
 * (semantic-checks.ts for the config; EgressAllowList.parse for other callers).
 */
export const EgressAllowListSchema = boundedList(EgressAllowEntrySchema).min(1, EMPTY_ALLOW_LIST);
