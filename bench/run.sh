#!/usr/bin/env bash
# Runs one benchmark, or lists them (`npm run bench -- NAME [ARGS…]`). Benchmarks are run by
# hand, never by the test suite; record what they print in bench/RESULTS.md with the command.
# The real services they use (Redis, the loopback registry, the guest kernel) are started first.
#
#   npm run bench                      # list
#   npm run bench -- oci-pull 5        # node bench/oci-pull.mjs 5
#   npm run bench -- vm-boot 10 4 30   # bash bench/vm-boot.sh 10 4 30
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-}"
if [ -z "$name" ]; then
  echo "benchmarks (npm run bench -- NAME [ARGS…]):"
  for f in bench/*.mjs bench/*.sh; do
    n="$(basename "$f")"; n="${n%.*}"
    [ "$n" = run ] && continue
    [ "${f##*.}" = mjs ] && [ -f "bench/$n.sh" ] && continue   # the .sh drives its .mjs
    printf '  %-16s %s\n' "$n" "$f"
  done | sort -u
  exit 0
fi
shift
npx tsc -b
bash scripts/test-services.sh start >&2
# shellcheck disable=SC1091
source .monocore-test/env.sh
if [ -f "bench/$name.sh" ]; then exec bash "bench/$name.sh" "$@"; fi
if [ -f "bench/$name.mjs" ]; then exec node "bench/$name.mjs" "$@"; fi
echo "no benchmark named $name (run: npm run bench)" >&2
exit 2
