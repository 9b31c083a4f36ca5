#!/usr/bin/env bash
# Builds an image from a Dockerfile on a given base, once per content: the tag is a hash of the
# base image and every input, so a second call with nothing changed does nothing.
#
#   bash scripts/docker-build-cached.sh NAME DOCKERFILE BASE_IMAGE [--stage S]... INPUT...
#   bash scripts/docker-build-cached.sh monocore Dockerfile "$base" --stage build \
#     Dockerfile .dockerignore package.json package-lock.json .npmrc tsconfig.json \
#     tsconfig.base.json libs apps scripts/guest-kernel.sh
#
# Prints NAME:<hash> on the last line of stdout. INPUTs are the files and directories (relative to
# the repository, which is the build context) the image is made of (node_modules, dist and
# *.tsbuildinfo under them are left out, as .dockerignore does); list them all, or a change goes
# unnoticed. The build runs on the engine of scripts/docker-engine.sh with the classic builder
# (DOCKER_BUILDKIT unset) and `--network host`, so apt-get and npm reach their registries the way
# this machine does (the engine gives containers no route out).
#
# Cache, for a fresh engine (a clean clone in CI, another checkout): each image is also saved to
# $MONOCORE_DOCKER_CACHE (default /var/cache/monocore/docker)/NAME-<hash>.tar with the stages
# named by --stage (e.g. the npm ci layers of a multi-stage build). An image whose tar exists is
# loaded instead of built; otherwise the newest tar of NAME is loaded, and it and every other
# NAME image in the engine are given to the build as --cache-from, so only the layers whose
# inputs changed are built again. One tar per NAME is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${MONOCORE_DOCKER_CACHE:-/var/cache/monocore/docker}"
log() { echo "docker-build-cached: $*" >&2; }
die() { echo "docker-build-cached: ERROR: $*" >&2; exit 1; }
[ $# -ge 4 ] || die "usage: $0 NAME DOCKERFILE BASE_IMAGE [--stage S]... INPUT..."
NAME="$1" DOCKERFILE="$2" BASE="$3"
shift 3
STAGES=()
while [ "${1:-}" = --stage ]; do STAGES+=("$2"); shift 2; done
[ $# -ge 1 ] || die "no INPUT given"
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
cd "$ROOT"
eval "$(bash "$ROOT/scripts/docker-engine.sh" start | tail -n1)"
export DOCKER_HOST
unset DOCKER_BUILDKIT

base_id="$("$DOCKER" image inspect --format '{{.Id}}' "$BASE")" || die "base image $BASE not found"
for i in "$@"; do [ -e "$i" ] || die "input $i does not exist"; done
HASH="$({
  echo "$base_id ${STAGES[*]:-}"
  sha256sum "$DOCKERFILE"
  find "$@" -type f -not -path '*/node_modules/*' -not -path '*/dist/*' -not -name '*.tsbuildinfo' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-12)"
REF="$NAME:$HASH"
FILE="$CACHE/$(printf '%s' "$NAME" | tr '/:' '__')"
TAR="$FILE-$HASH.tar"

if "$DOCKER" image inspect "$REF" >/dev/null 2>&1; then
  log "$REF present"; echo "$REF"; exit 0
fi
mkdir -p "$CACHE"
exec 7>"$FILE.lock"
flock -w 1800 7 || die "timed out waiting for another build of $NAME ($FILE.lock)"
if [ -f "$TAR" ]; then
  t0=$SECONDS
  "$DOCKER" load -q -i "$TAR" >&2 || die "docker load $TAR failed"
  "$DOCKER" image inspect "$REF" >/dev/null 2>&1 || die "$TAR did not hold $REF"
  log "$REF loaded from $TAR ($((SECONDS - t0)) s)"; echo "$REF"; exit 0
fi

prev="$(ls -t "$FILE"-????????????.tar 2>/dev/null | head -n1 || true)"
if [ -n "$prev" ]; then
  t0=$SECONDS
  "$DOCKER" load -q -i "$prev" >/dev/null 2>&1 || log "could not load $prev (ignored: a cold build)"
  log "layers of $(basename "$prev") loaded for --cache-from ($((SECONDS - t0)) s)"
fi
# The classic builder given --cache-from uses those images only (not its local cache): every
# earlier build of NAME and of its stages in this engine is a candidate.
cache_from=()
for repo in "$NAME" "${STAGES[@]/#/$NAME-}"; do
  while IFS= read -r ref; do cache_from+=(--cache-from "$ref"); done \
    < <("$DOCKER" images --format '{{.Repository}}:{{.Tag}}' "$repo" | grep -v '<none>' || true)
done

t0=$SECONDS
build=("$DOCKER" build --force-rm --network host --build-arg "BASE_IMAGE=$BASE" -f "$DOCKERFILE" "${cache_from[@]}")
saved=("$REF")
for s in "${STAGES[@]}"; do
  log "building stage $s of $DOCKERFILE -> $NAME-$s:$HASH"
  "${build[@]}" --target "$s" -t "$NAME-$s:$HASH" . >&2 || die "docker build --target $s failed"
  build+=(--cache-from "$NAME-$s:$HASH")
  saved+=("$NAME-$s:$HASH")
done
log "building $DOCKERFILE -> $REF (base $BASE)"
"${build[@]}" -t "$REF" . >&2 || die "docker build failed"
log "built $REF in $((SECONDS - t0)) s; saving it to $TAR"
"$DOCKER" save -o "$TAR.tmp" "${saved[@]}" && mv "$TAR.tmp" "$TAR" || { rm -f "$TAR.tmp"; die "docker save failed"; }
for old in "$FILE"-????????????.tar; do [ "$old" = "$TAR" ] || rm -f "$old"; done
# Earlier builds of NAME leave the engine (their shared layers stay with the new one).
for ref in "${cache_from[@]}"; do
  case "$ref" in --cache-from) ;; *) "$DOCKER" rmi "$ref" >/dev/null 2>&1 || true ;; esac
done
echo "$REF"
