#!/usr/bin/env bash
# The test command (README: `npm test`; .ci/run calls it too).
# Builds, starts the real services the tests talk to (Redis, an OCI registry on
# loopback, test images, the guest kernel — scripts/test-services.sh; the Docker engine and
# images of the compose test — scripts/compose-images.sh), then runs every
# compiled *.test.js with Node's own test runner, whose closing summary CI reads.
#
#   npm test                                   # everything
#   npm test -- --test-name-pattern=planner    # extra arguments go to `node --test`
#   MONOCORE_TEST_CONCURRENCY=1 npm test       # files run in parallel (default 2)
#
# Exits non-zero when no test file is found. A compiled test whose .ts source no longer
# exists (left in dist/ by an earlier build) is not run.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -b
bash scripts/test-services.sh start
# shellcheck disable=SC1091
source .monocore-test/env.sh
# The compose test's engine and images are prepared here, not in the test: building them
# reaches package mirrors (as installing does); tests talk only to this machine.
bash scripts/compose-images.sh
# shellcheck disable=SC1091
source .monocore-test/compose-images.env

# dist/<path>.test.js -> its source .ts (packages: <pkg>/dist -> <pkg>/src; root tests: dist/test -> test)
source_of() {
  case "$1" in
    dist/test/*) echo "test/${1#dist/test/}" ;;
    */dist/*) echo "${1%%/dist/*}/src/${1#*/dist/}" ;;
  esac | sed 's/\.js$/.ts/'
}

files=()
while IFS= read -r f; do
  src="$(source_of "$f")"
  if [ -f "$src" ]; then files+=("$f")
  else echo "test.sh: not running stale $f (no $src)" >&2; fi
done < <(find libs/*/dist apps/*/dist dist/test -name '*.test.js' -not -path '*/node_modules/*' 2>/dev/null | sort)

if [ ${#files[@]} -eq 0 ]; then
  echo "test.sh: no test files found (looked for libs/*/dist, apps/*/dist, dist/test **/*.test.js)" >&2
  exit 1
fi
echo "test.sh: running ${#files[@]} test files" >&2
# --test-timeout: a hung test (e.g. a VM that never boots) fails after 15 min instead of
# eating the whole CI budget. It also bounds each file as a whole, including the time a VM test
# file waits for the chaos soak's exclusive lock (test/support/vm-test-lock.ts): 10 min was too
# short for a file queued behind the soak. --test-force-exit: the runner (and each file) exits once its
# tests are done, even if a process a test left behind still holds one of its pipes — that
# once kept the runner alive after its summary until CI's budget ran out (test helpers now
# spawn such processes tied to the test: test/support/tied-child.ts).
exec node --test --test-force-exit --test-concurrency="${MONOCORE_TEST_CONCURRENCY:-2}" \
  --test-timeout="${MONOCORE_TEST_TIMEOUT_MS:-900000}" "$@" "${files[@]}"
