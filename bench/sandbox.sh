#!/usr/bin/env bash
# Sandboxes through the REST API against Docker, in one run (bench/sandbox.mjs says what is
# measured): the Docker engine from scripts/docker-engine.sh, its image from
# scripts/docker-base-image.sh (Debian bookworm built locally: no image hub is reachable).
#   npm run bench -- sandbox [EXECS=100] [MIB=64] [FLOOD_MB=100] [IDLE=20]
# MONOCORE_BENCH_STACK=serve runs the API and the worker as one `monocore serve` process instead
# of two (split, the default).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/docker-engine.sh start | tail -n1)"
export DOCKER_HOST
IMAGE="$(bash scripts/docker-base-image.sh | tail -n1)"
export MONOCORE_KERNEL_DIR="${MONOCORE_KERNEL_DIR:-${MONOCORE_TEST_KERNEL_DIR:-}}"
exec node bench/sandbox.mjs "$IMAGE" "$@"
