#!/usr/bin/env bash
# Installs every system package monocore (and its tests/benchmarks) needs, and checks
# Node.js. Idempotent and fast when everything is there: `apt-get update` runs once, only
# when a package is missing. Needs root (or sudo) only when something must be installed.
#
#   bash scripts/install-deps.sh
#
# Why each package:
#   qemu-system-x86           the hypervisor (QEMU microvm; TCG where KVM is unusable)
#   busybox-static cpio       guest initramfs and the test images' userland
#   xz-utils zstd             unpacking the guest kernel; zstd-compressed image layers
#   redis-server              the state/queue store (tests run a private instance)
#   docker-registry           a real OCI registry on loopback for tests
#   umoci skopeo              building and pushing the test images (independent tools)
#   iproute2 kmod util-linux  network namespaces (ip netns), modinfo/modules, setsid/flock/unshare
#   curl jq                   service health checks and registry queries in scripts
#   e2fsprogs                 mkfs.ext4 for per-service copy-on-write disks
#   erofs-utils               mkfs.erofs: each image's read-only root filesystem file, the block
#                             device QEMU VMs boot from (docs/OCI.md "Block images")
#   hyperfine                 bench/ scripts
#   gcc libc6-dev             builds the labelled stub libkrun in tests
#   passt nftables            outbound access for local_only = false groups (docs/NETWORK.md)
#   chromium                  tests: Bull Board seen by a headless browser (playwright-core drives
#                             this binary; it never downloads a browser of its own)
#   prometheus                a real Prometheus scrapes GET /metrics in test/api/metrics.test.ts, and
#                             promtool checks the exposition and deploy/prometheus/ (docs/METRICS.md)
#   docker.io docker-compose  the compose deployment test starts Debian's engine
#                             (scripts/docker-engine.sh) and docker-compose 1.29 on it
#   debootstrap               builds the local base image for it (scripts/docker-base-image.sh:
#                             no image hub is reachable, so no node:20-bookworm-slim to pull),
#                             and the python test image (scripts/build-test-images.sh)
set -euo pipefail

PACKAGES=(
  qemu-system-x86 busybox-static cpio xz-utils redis-server docker-registry
  umoci skopeo zstd iproute2 kmod curl jq e2fsprogs erofs-utils util-linux hyperfine
  gcc libc6-dev passt nftables prometheus chromium docker.io docker-compose debootstrap
)
NODE_MIN=20.19.0

log() { echo "install-deps: $*" >&2; }
die() { echo "install-deps: ERROR: $*" >&2; exit 1; }

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | cut -c1-2)" = ii ]
}

command -v dpkg-query >/dev/null 2>&1 || die "this script needs a Debian/Ubuntu host (dpkg/apt-get)"

missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done

if [ ${#missing[@]} -eq 0 ]; then
  log "all ${#PACKAGES[@]} apt packages present"
else
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing packages (${missing[*]}) and not root; re-run as root"
    SUDO=(sudo)
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q || die "apt-get update failed"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || die "apt-get install failed for: ${missing[*]}"
  for p in "${missing[@]}"; do installed "$p" || die "package $p is still not installed"; done
  log "installed ${#missing[@]} package(s)"
fi

# redis-server's Debian package starts a system instance on 6379; our tests never use it
# (they run their own on 16379), so it is left as the distribution configured it. The same
# goes for prometheus's system instance (9090, where the init system starts it): the metrics
# test runs its own on a free loopback port. docker.io's engine is not started here either (Debian
# may start a system one, which scripts/docker-engine.sh then uses); the tests start their own.

# Node.js >= 20.19 and npm (not installed from apt: Debian 12's nodejs is 18).
command -v node >/dev/null 2>&1 || die "Node.js not found: install Node.js >= $NODE_MIN (e.g. from nodejs.org or NodeSource) and npm"
command -v npm >/dev/null 2>&1 || die "npm not found: install npm alongside Node.js >= $NODE_MIN"
node_version="$(node -p 'process.versions.node')"
if ! node -e '
  const [a, b, c] = process.argv[1].split(".").map(Number);
  const [x, y, z] = process.argv[2].split(".").map(Number);
  process.exit(a > x || (a === x && (b > y || (b === y && c >= z))) ? 0 : 1);
' "$node_version" "$NODE_MIN"; then
  die "Node.js $node_version is too old: monocore needs Node.js >= $NODE_MIN"
fi
log "node $node_version, npm $(npm --version)"
