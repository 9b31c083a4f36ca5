#!/usr/bin/env bash
# Builds monocore's test OCI images with independent tools (umoci + skopeo, not our own
# code) from Debian's busybox-static and pushes them to the test registry:
#
#   $REGISTRY/monocore-test/busybox:latest          one layer:
#       /bin/busybox, a symlink in /bin for every applet (`busybox --list`), /bin/sh,
#       /etc/passwd + /etc/group (root), /etc/hostname, /tmp (1777), /root,
#       /etc/removed-in-layer2 (a file the layered image deletes)
#       config: Cmd ["/bin/sh"], Env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#   $REGISTRY/monocore-test/busybox-layered:latest  two layers:
#       the base layer above + a layer that adds /etc/motd ("monocore layered test image")
#       and deletes /etc/removed-in-layer2 (a real whiteout: etc/.wh.removed-in-layer2)
#   $REGISTRY/monocore-test/python:latest           Debian bookworm minbase + python3-minimal
#       (debootstrap, cached per machine; see "python" below)
#
# Both are OCI manifests (application/vnd.oci.image.manifest.v1+json), linux/amd64, gzip
# layers. Idempotent: each image carries the label org.monocore.test.build-key = sha256 of
# (busybox binary + this script); the build is skipped when the registry already has an
# image with the current key, so a changed busybox or script rebuilds.
#
# Usage: MONOCORE_TEST_REGISTRY=127.0.0.1:15000 bash scripts/build-test-images.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="$ROOT/.monocore-test"
REGISTRY="${MONOCORE_TEST_REGISTRY:-127.0.0.1:15000}"
WORK="$STATE/images"
LABEL=org.monocore.test.build-key
PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
FORCE="${1:-}"

log() { echo "build-test-images: $*" >&2; }
die() { echo "build-test-images: ERROR: $*" >&2; exit 1; }

for c in umoci skopeo curl jq sha256sum; do
  command -v "$c" >/dev/null 2>&1 || die "missing command '$c' — run: bash scripts/install-deps.sh"
done
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || BUSYBOX="$(command -v busybox || true)"
[ -n "$BUSYBOX" ] && [ -x "$BUSYBOX" ] || die "busybox not found — run: bash scripts/install-deps.sh (busybox-static)"
# busybox-static: no dynamic loader needed inside the image.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked; the image needs busybox-static (apt-get install busybox-static)"
fi

KEY="$(cat "$BUSYBOX" "$0" | sha256sum | cut -d' ' -f1)"

# Label value of REPO:latest in the registry (empty when absent).
registry_key() {
  local repo="$1" manifest digest
  manifest="$(curl -fsS --max-time 10 -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REGISTRY/v2/$repo/manifests/latest" 2>/dev/null)" || return 0
  digest="$(jq -r '.config.digest // empty' <<<"$manifest")"
  [ -n "$digest" ] || return 0
  curl -fsS --max-time 10 "http://$REGISTRY/v2/$repo/blobs/$digest" 2>/dev/null \
    | jq -r --arg l "$LABEL" '.config.Labels[$l] // empty' || true
}

busybox_current() {
  [ "$FORCE" != "--force" ] \
    && [ "$(registry_key monocore-test/busybox)" = "$KEY" ] \
    && [ "$(registry_key monocore-test/busybox-layered)" = "$KEY" ]
}

build_busybox_images() {
log "building test images (busybox $("$BUSYBOX" 2>&1 | head -n1 | awk '{print $2}'), key ${KEY:0:12})"
rm -rf "$WORK"
mkdir -p "$WORK"
OCI="$WORK/oci"
umoci init --layout "$OCI"
umoci new --image "$OCI:base"
umoci unpack --image "$OCI:base" "$WORK/bundle"

R="$WORK/bundle/rootfs"
mkdir -p "$R/bin" "$R/etc" "$R/root" "$R/tmp" "$R/sbin" "$R/usr/bin" "$R/usr/sbin" "$R/var" "$R/proc" "$R/sys" "$R/dev"
chmod 0755 "$R" "$R/bin" "$R/etc" "$R/sbin" "$R/usr" "$R/usr/bin" "$R/usr/sbin" "$R/var" "$R/proc" "$R/sys" "$R/dev"
chmod 0700 "$R/root"
chmod 1777 "$R/tmp"
install -m 0755 "$BUSYBOX" "$R/bin/busybox"
count=0
while read -r applet; do
  [ -n "$applet" ] && [ "$applet" != busybox ] || continue
  case "$applet" in */*|.*) die "unexpected applet name '$applet' from busybox --list" ;; esac
  ln -sf busybox "$R/bin/$applet"
  count=$((count + 1))
done < <("$BUSYBOX" --list)
[ "$count" -gt 100 ] || die "busybox --list printed only $count applets"
[ -L "$R/bin/sh" ] || ln -s busybox "$R/bin/sh"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
printf 'monocore-test\n' >"$R/etc/hostname"
printf 'this file is deleted by the second layer of monocore-test/busybox-layered\n' >"$R/etc/removed-in-layer2"
chmod 0644 "$R/etc/passwd" "$R/etc/group" "$R/etc/hostname" "$R/etc/removed-in-layer2"

umoci repack --image "$OCI:base" "$WORK/bundle"
umoci config --image "$OCI:base" --os linux --architecture amd64 \
  --config.cmd /bin/sh --config.env "PATH=$PATH_ENV" --config.workingdir / \
  --config.label "$LABEL=$KEY" --config.label "org.opencontainers.image.title=monocore-test/busybox"

# Second image: base + one layer (adds /etc/motd, deletes /etc/removed-in-layer2).
umoci tag --image "$OCI:base" layered
umoci unpack --image "$OCI:layered" "$WORK/bundle2"
printf 'monocore layered test image\n' >"$WORK/bundle2/rootfs/etc/motd"
chmod 0644 "$WORK/bundle2/rootfs/etc/motd"
rm "$WORK/bundle2/rootfs/etc/removed-in-layer2"
umoci repack --image "$OCI:layered" "$WORK/bundle2"
umoci config --image "$OCI:layered" \
  --config.label "org.opencontainers.image.title=monocore-test/busybox-layered"

layers() { umoci stat --image "$OCI:$1" --json | jq '[.history[] | select(.empty_layer != true)] | length'; }
[ "$(layers base)" = 1 ] || die "base image has $(layers base) layers, expected 1"
[ "$(layers layered)" = 2 ] || die "layered image has $(layers layered) layers, expected 2"

push() {
  skopeo copy --quiet --insecure-policy --dest-tls-verify=false \
    "oci:$OCI:$1" "docker://$REGISTRY/monocore-test/$2:latest" \
    || die "skopeo could not push $2 to $REGISTRY"
  log "pushed $REGISTRY/monocore-test/$2:latest"
}
push base busybox
push layered busybox-layered
rm -rf "$WORK/bundle" "$WORK/bundle2"
}

# ---------------------------------------------------------------- python
# $REGISTRY/monocore-test/python:latest: Debian bookworm (debootstrap --variant=minbase from this
# machine's apt mirror) with python3-minimal; docs, locales, man pages and apt caches removed
# (~100 MB). config: Cmd ["python3"], Env PATH. For sandbox tests that need a real distribution
# userland (glibc, dynamically linked programs). The debootstrap result is cached outside the
# checkout ($MONOCORE_TEST_CACHE, default /var/cache/monocore/test-images), so a fresh clone on
# the same machine (CI) pays the ~1-5 minute debootstrap once. Needs root (debootstrap).
PY_KEY="$( { sed -n '/^# -* python$/,$p' "$0"; echo bookworm python3-minimal; } | sha256sum | cut -c1-12)"
PY_CACHE="${MONOCORE_TEST_CACHE:-/var/cache/monocore/test-images}"

debian_mirror() {
  if [ -n "${MONOCORE_DEBIAN_MIRROR:-}" ]; then echo "$MONOCORE_DEBIAN_MIRROR"; return; fi
  local m
  m="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" && $2 !~ /security/ { print $2; exit }')"
  [ -n "$m" ] || m="$(cat /etc/apt/sources.list 2>/dev/null | awk '$1 == "deb" && $0 !~ /security/ { print ($2 ~ /^\[/) ? $3 : $2; exit }')"
  echo "${m:-http://deb.debian.org/debian}"
}

build_python_image() {
  if [ "$FORCE" != "--force" ] && [ "$(registry_key monocore-test/python)" = "$PY_KEY" ]; then
    log "python test image up to date in $REGISTRY (key $PY_KEY)"
    return 0
  fi
  command -v debootstrap >/dev/null 2>&1 || die "missing command 'debootstrap' — run: bash scripts/install-deps.sh"
  mkdir -p "$PY_CACHE"
  local tarball="$PY_CACHE/python-rootfs-$PY_KEY.tar" work="$WORK/python" t0=$SECONDS
  exec 8>"$PY_CACHE/.python.lock"
  flock -w 900 8 || die "timed out waiting for another build of the python rootfs ($PY_CACHE/.python.lock)"
  if [ ! -f "$tarball" ]; then
    [ "$(id -u)" -eq 0 ] || die "building the python test image needs root (debootstrap)"
    local mirror tmp
    mirror="$(debian_mirror)"
    tmp="$(mktemp -d "$PY_CACHE/.python.XXXXXX")"
    log "debootstrap --variant=minbase --include=python3-minimal bookworm from $mirror (a few minutes, once per machine)"
    debootstrap --variant=minbase --include=python3-minimal bookworm "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1 \
      || { tail -n 30 "$tmp/debootstrap.log" >&2; rm -rf "$tmp"; die "debootstrap failed"; }
    rm -rf "$tmp/root"/usr/share/{doc,locale,man,info}/* "$tmp/root"/var/cache/apt/* "$tmp/root"/var/lib/apt/lists/* "$tmp/root"/var/log/* "$tmp/root"/tmp/*
    chroot "$tmp/root" /usr/bin/python3 -c 'print("ok")' >/dev/null || { rm -rf "$tmp"; die "python3 does not run in the new root"; }
    tar -C "$tmp/root" --numeric-owner -cf "$tmp/rootfs.tar" .
    mv "$tmp/rootfs.tar" "$tarball"
    rm -rf "$tmp"
    find "$PY_CACHE" -maxdepth 1 -name 'python-rootfs-*.tar' ! -name "python-rootfs-$PY_KEY.tar" -delete
  fi
  rm -rf "$work"
  mkdir -p "$work"
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:python"
  umoci unpack --image "$work/oci:python" "$work/bundle"
  tar -C "$work/bundle/rootfs" --numeric-owner -xf "$tarball"
  umoci repack --image "$work/oci:python" "$work/bundle"
  umoci config --image "$work/oci:python" --os linux --architecture amd64 \
    --config.cmd python3 --config.env "PATH=$PATH_ENV" --config.workingdir / \
    --config.label "$LABEL=$PY_KEY" --config.label "org.opencontainers.image.title=monocore-test/python"
  skopeo copy --quiet --insecure-policy --dest-tls-verify=false \
    "oci:$work/oci:python" "docker://$REGISTRY/monocore-test/python:latest" \
    || die "skopeo could not push python to $REGISTRY"
  rm -rf "$work"
  log "pushed $REGISTRY/monocore-test/python:latest ($((SECONDS - t0)) s)"
}

if busybox_current; then
  log "test images up to date in $REGISTRY (key ${KEY:0:12})"
else
  build_busybox_images
fi
build_python_image
