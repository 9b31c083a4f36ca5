import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

const nameByNumber = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  // Several names can share a number (EAGAIN/EWOULDBLOCK): keep the first, the canonical one.
  if (!nameByNumber.has(value)) nameByNumber.set(value, name);
}

/**
 * Describes a (positive) errno value for humans: "No such file or directory (ENOENT)".
 * Names come from os.constants.errno, descriptions from libuv's table; an
 * unknown number is still shown rather than hidden ("errno 4242").
 */
export function describeErrno(errno: number): { name: string | undefined; text: string } {
  const name = nameByNumber.get(errno);
  // libuv reports errors as negative errno values on Unix.
  const entry = getSystemErrorMap().get(-errno);
  const message = entry?.[1];
  if (name && message) return { name, text: `${message.charAt(0).toUpperCase()}${message.slice(1)} (${name})` };
  if (name) return { name, text: name };
  return { name: undefined, text: `errno ${errno}` };
}
