import assert from 'node:assert/strict';

/**
 * Shell probes the VM tests run inside guests, and how their output is read.
 * Both exist to keep tests from racing the guest's own work.
 */

/**
 * A background counter that survives its exec: /tmp/count holds how many 0.2 s
 * ticks it has seen. Each value is written to a side file and renamed into
 * place, so a reader sees the old value or the new one, never the empty file
 * that `echo $i > /tmp/count` leaves between its truncate and its write (a
 * reader landing there read "" = 0 and failed a fork test in CI).
 */
export const START_COUNTER =
  '(i=0; while true; do i=$((i+1)); echo $i > /tmp/count.next; mv /tmp/count.next /tmp/count; sleep 0.2; done) >/dev/null 2>&1 &';

/** The counter's value from `cat /tmp/count` output; anything but a positive integer fails the test. */
export function counterValue(text: string): number {
  const trimmed = text.trim();
  assert.match(trimmed, /^[1-9][0-9]*$/, `the counter file holds a count, not ${JSON.stringify(text)}`);
  return Number(trimmed);
}

/**
 * The guest's clock (`date +%s` output) is right within `slackS` seconds: it is
 * bounded by the host's clock read before the exec was sent and after its reply
 * came back, so a slow exec on a loaded host widens the window instead of failing
 * the check (comparing with the host's clock after the reply alone did, once, at
 * load 9). `date +%s` truncates, hence the floor on the lower bound.
 */
export function assertGuestClock(dateOutput: string, hostBeforeMs: number, hostAfterMs: number, slackS = 1): void {
  const guest = Number(dateOutput.trim());
  assert.ok(Number.isInteger(guest), `date +%s printed ${JSON.stringify(dateOutput)}`);
  const low = Math.floor(hostBeforeMs / 1000) - slackS;
  const high = hostAfterMs / 1000 + slackS;
  assert.ok(guest >= low && guest <= high, `guest clock ${guest} outside the host's [${low}, ${high.toFixed(1)}] (before and after the exec, ±${slackS} s)`);
}
