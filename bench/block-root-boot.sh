#!/usr/bin/env bash
# Boot time of `monocore run IMAGE -- /bin/true` with the image root over 9p (the code before
# block roots: a checkout of BASE, built into bench/out/base-9p) vs on a read-only erofs block
# device (this checkout), alternating, N rounds each, medians and ratio. Each variant has its own
# MONOCORE_HOME with the image pulled and the initramfs built before timing (warm).
#
#   bash bench/block-root-boot.sh [N=10] [BASE=62eb9e2]     (needs scripts/test-services.sh start)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10}"; BASE="${2:-62eb9e2}"
# shellcheck disable=SC1091
. .monocore-test/env.sh
export MONOCORE_KERNEL_DIR="${MONOCORE_KERNEL_DIR:-$(bash scripts/guest-kernel.sh | tail -n1)}"
IMAGE="${MONOCORE_BENCH_IMAGE:-$MONOCORE_TEST_IMAGE}"
OLD=bench/out/base-9p
if [ ! -f "$OLD/.built-$BASE" ]; then
  echo "building $BASE (9p image root) into $OLD…" >&2
  rm -rf "$OLD" && mkdir -p "$OLD"
  git archive "$BASE" | tar -x -C "$OLD"
  (cd "$OLD" && npm ci --no-audit --no-fund >/dev/null && npx tsc -b libs/api-schemas libs/engine libs/native apps/puller apps/worker apps/api apps/cli)
  touch "$OLD/.built-$BASE"
fi
run9p() { MONOCORE_HOME="$PWD/bench/out/boot-home-9p" node "$OLD/apps/cli/dist/main.js" run -q "$IMAGE" -- /bin/true; }
runblk() { MONOCORE_HOME="$PWD/bench/out/boot-home-block" node apps/cli/dist/main.js run -q "$IMAGE" -- /bin/true; }
run9p; runblk   # warm: pull (+ block image), initramfs
W="$(mktemp -d /tmp/blkboot.XXXXXX)"; trap 'rm -rf "$W"' EXIT
ms() { date +%s%3N; }
for i in $(seq 1 "$N"); do
  t0=$(ms); run9p; t1=$(ms); echo $((t1 - t0)) >> "$W/9p.txt"
  t0=$(ms); runblk; t1=$(ms); echo $((t1 - t0)) >> "$W/block.txt"
done
med() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
A="$(med "$W/9p.txt")"; B="$(med "$W/block.txt")"
echo "monocore run -- /bin/true, 9p image root ($BASE): median ${A} ms (all: $(tr '\n' ' ' < "$W/9p.txt"))"
echo "monocore run -- /bin/true, erofs block root:      median ${B} ms (all: $(tr '\n' ' ' < "$W/block.txt"))"
echo "ratio block / 9p: $(awk -v a="$B" -v b="$A" 'BEGIN{printf "%.3f", a/b}')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
