#!/usr/bin/env bash
# A local stand-in for the official `node:20-bookworm-slim` image, built from Debian packages,
# for machines that reach no image hub (this project's CI and developers' machines).
#
#   bash scripts/docker-base-image.sh        # prints the image reference on the last line
#   docker build --build-arg BASE_IMAGE="$(bash scripts/docker-base-image.sh | tail -n1)" .
#
# What it holds, like the official image: Debian bookworm (debootstrap --variant=minbase from the
# apt mirror this machine uses, with bookworm, bookworm-updates and bookworm-security in
# /etc/apt/sources.list.d/debian.sources so `apt-get install` in a Dockerfile works), this
# machine's Node.js and npm in /usr/local (node, npm, npx on PATH), a `node` user (uid/gid 1000),
# ca-certificates. Nothing else: a Dockerfile installs what it needs on top, as it would on the
# official image. One addition, as a site's own base image would carry it: the certificate
# authorities this machine adds to its trust store (/usr/local/share/ca-certificates/*.crt, e.g.
# a TLS-inspecting proxy's), installed with update-ca-certificates, and then
# NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt so npm and Node trust them too.
#
# Reference: local/node-bookworm-slim:<node version>-<hash>, where the hash covers this script,
# the mirror, the Node.js/npm binaries and those certificates. Cached and idempotent:
#   1. the engine already has that tag                    -> nothing to do (~0.1 s)
#   2. $CACHE/node-bookworm-slim-<hash>.tar exists         -> docker load (~5 s)
#   3. otherwise debootstrap into a temporary dir, docker import, and docker save of the
#      imported image into the cache (~1 min)
# CACHE is $MONOCORE_DOCKER_CACHE or /var/cache/monocore/docker: outside any checkout, so a fresh
# clone (CI) or another checkout's engine on the same machine reuses the base.
# The cache holds the imported image (docker save), not its root filesystem: each `docker import`
# of the same files makes an image with another id (its creation time is part of it), while the
# images built on the base are cached under a hash of that id and reuse earlier builds' layers
# only on the very same base (scripts/docker-build-cached.sh). Loaded, the base keeps its id in
# every engine, so a fresh engine loads monocore's cached image instead of building it again.
# Uses the engine from scripts/docker-engine.sh (started when none answers). Needs root.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${MONOCORE_DOCKER_CACHE:-/var/cache/monocore/docker}"
SUITE=bookworm
log() { echo "docker-base-image: $*" >&2; }
die() { echo "docker-base-image: ERROR: $*" >&2; exit 1; }

if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, docker)"
for c in debootstrap node npm tar; do
  command -v "$c" >/dev/null 2>&1 || { bash "$ROOT/scripts/install-deps.sh" >&2; break; }
done
command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing (scripts/install-deps.sh installs it)"

# The engine (DOCKER_HOST), as scripts/docker-engine.sh finds or starts it.
eval "$(bash "$ROOT/scripts/docker-engine.sh" start | tail -n1)"
export DOCKER_HOST

# The Debian mirror this machine's apt uses (deb822 .sources or one-line .list entries).
mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN{RS=""} /Suites:[^\n]*(^|[ \t])'"$SUITE"'([ \t\n]|$)/ && /URIs:/ {
           for (i = 1; i <= NF; i++) if ($i == "URIs:") { print $(i+1); exit } }' "$f"
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk '$1 == "deb" { u = ($2 ~ /^\[/) ? $3 : $2; s = ($2 ~ /^\[/) ? $4 : $3; if (s == "'"$SUITE"'") print u }' || true
}
MIRROR="${MONOCORE_DEBIAN_MIRROR:-$(mirror | { grep -v -- '-security' || true; } | head -n1)}"
[ -n "$MIRROR" ] || die "found no '$SUITE' entry in /etc/apt/sources.list*; set MONOCORE_DEBIAN_MIRROR"
SECURITY="$(mirror | { grep -- '-security' || true; } | head -n1)"
SECURITY="${SECURITY:-${MIRROR%/debian}/debian-security}"

NODE_BIN="$(readlink -f "$(command -v node)")"
NPM_DIR="$(readlink -f "$(npm root -g)/npm")"
[ -f "$NPM_DIR/bin/npm-cli.js" ] || die "npm's package not found at $NPM_DIR"
NODE_VERSION="$("$NODE_BIN" -p process.versions.node)"
HASH="$({
  cat "$0"
  echo "$MIRROR $SECURITY"
  sha256sum "$NODE_BIN"
  cat "$NPM_DIR/package.json"
  cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true
} | sha256sum | cut -c1-12)"
REF="local/node-bookworm-slim:$NODE_VERSION-$HASH"
TAR="$CACHE/node-bookworm-slim-$HASH.tar"

if "$DOCKER" image inspect "$REF" >/dev/null 2>&1; then
  log "$REF present"
  # The cache lost it (cleaned, another machine's): this engine's copy goes back, so that the
  # next fresh engine loads this very image and the images cached on it stay valid.
  if [ ! -f "$TAR" ]; then
    mkdir -p "$CACHE"
    "$DOCKER" save -o "$TAR.tmp.$$" "$REF" && mv "$TAR.tmp.$$" "$TAR" || { rm -f "$TAR.tmp.$$"; log "could not save $REF to $TAR (ignored)"; }
  fi
  echo "$REF"
  exit 0
fi

mkdir -p "$CACHE"
exec 7>"$CACHE/.base.lock"
flock -w 900 7 || die "timed out waiting for another build of the base ($CACHE/.base.lock)"

changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
         --change "ENV NODE_VERSION=$NODE_VERSION")
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  changes+=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
fi

if [ ! -f "$TAR" ]; then
  t0=$SECONDS
  work="$(mktemp -d "$CACHE/.base.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  rootfs="${work:?}/rootfs"
  log "debootstrap --variant=minbase $SUITE from $MIRROR (progress: $work/debootstrap.log)"
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  # What the official bookworm-slim images carry: the three suites, no recommends, no caches.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90monocore-no-recommends"
  rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
  # Node.js and npm where the official image has them.
  install -D -m 0755 "$NODE_BIN" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp -a "$NPM_DIR" "$rootfs/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" /usr/sbin/update-ca-certificates >&2
  fi
  chroot "$rootfs" /usr/sbin/groupadd --gid 1000 node
  chroot "$rootfs" /usr/sbin/useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  chroot "$rootfs" /usr/local/bin/node -e 'process.exit(0)' || die "node does not run inside the new root"
  log "root filesystem ready ($((SECONDS - t0)) s); docker import -> $REF"
  tar -C "$rootfs" --numeric-owner -c . \
    | "$DOCKER" import "${changes[@]}" --change 'CMD ["node"]' - "$REF" >/dev/null \
    || die "docker import failed"
  "$DOCKER" save -o "$work/image.tar" "$REF" || die "docker save $REF failed"
  mv "$work/image.tar" "$TAR"
  rm -rf "$work"
  trap - EXIT
  log "$REF saved to $TAR ($(du -h "$TAR" | cut -f1), $((SECONDS - t0)) s in all)"
else
  # Made by another engine (or by this one before its data was deleted).
  t0=$SECONDS
  "$DOCKER" load -q -i "$TAR" >&2 || die "docker load $TAR failed (delete it and run again to build the base anew)"
  "$DOCKER" image inspect "$REF" >/dev/null 2>&1 || die "$TAR does not hold $REF (delete it and run again to build the base anew)"
  log "$REF loaded from $TAR ($((SECONDS - t0)) s)"
fi

# Older bases of this script are dropped from the cache (each is ~240 MB).
find "$CACHE" -maxdepth 1 -name 'node-bookworm-slim-*.tar' ! -name "$(basename "$TAR")" -mmin +60 -delete 2>/dev/null || true
echo "$REF"
