#!/usr/bin/env bash
# The test command (README: `npm test`; .ci/run calls it too).
# Builds, starts the real services the tests talk to (Redis, an OCI registry on
# loopback, test images, the guest kernel), then runs every compiled *.test.js
# with Node's own test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -b
bash scripts/test-services.sh start
# shellcheck disable=SC1091
source .monocore-test/env.sh
mapfile -t files < <(find libs/*/dist apps/*/dist dist/test -name '*.test.js' 2>/dev/null | sort)
if [ ${#files[@]} -eq 0 ]; then echo "no test files found" >&2; exit 1; fi
exec node --test --test-concurrency="${MONOCORE_TEST_CONCURRENCY:-2}" "$@" "${files[@]}"
