#!/usr/bin/env bash
# Finds or installs the guest kernel the qemu backend boots.
#
#   bash scripts/guest-kernel.sh            # default dir /var/lib/monocore/kernel
#   MONOCORE_KERNEL_DIR=/x bash scripts/guest-kernel.sh
#
# Result (idempotent; a second run only checks the marker and returns):
#   $DIR/vmlinux              uncompressed ELF kernel (PVH entry) — QEMU under TCG
#                             crawls or hangs decompressing a bzImage (PLATFORM.md)
#   $DIR/lib/modules/<ver>/   that kernel's modules + modules.dep
#   $DIR/version              <ver>
#   $DIR/.complete            written last: a half-built dir is never taken as done
# The directory is printed on the LAST line of stdout (progress goes to stderr).
#
# Source: Debian's generic `linux-image-<ver>-amd64` package (NOT -cloud: the cloud
# kernel lacks 9p), fetched with `apt-get download` from the configured apt archive
# only, unpacked with `dpkg -x` — nothing is installed on the host.
# Override the package with MONOCORE_KERNEL_PACKAGE=linux-image-6.1.0-56-amd64.
set -euo pipefail

DIR="${MONOCORE_KERNEL_DIR:-/var/lib/monocore/kernel}"
log() { printf 'guest-kernel: %s\n' "$*" >&2; }

if [ -f "$DIR/.complete" ] && [ -f "$DIR/vmlinux" ] && [ -d "$DIR/lib/modules" ]; then
  echo "$DIR"
  exit 0
fi

for tool in apt-get apt-cache dpkg xz grep od; do
  command -v "$tool" >/dev/null || { log "missing tool: $tool (Debian/Ubuntu host required)"; exit 1; }
done
if [ "$(uname -m)" != x86_64 ]; then
  log "only x86_64 guests are supported by this script (host is $(uname -m))"; exit 1
fi

pkg="${MONOCORE_KERNEL_PACKAGE:-}"
if [ -z "$pkg" ]; then
  # The meta package depends on the current generic ABI package, e.g. linux-image-6.1.0-56-amd64.
  pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
  if [ -z "$pkg" ]; then
    log "apt knows no linux-image-amd64; running apt-get update once"
    apt-get update -qq >&2 || true
    pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
  fi
  [ -n "$pkg" ] || { log "cannot resolve the generic kernel package (apt-cache depends linux-image-amd64)"; exit 1; }
fi
case "$pkg" in *cloud*) log "refusing $pkg: the cloud kernel lacks 9p; use the generic -amd64 package"; exit 1;; esac

parent="$(dirname "$DIR")"
mkdir -p "$parent"
work="$(mktemp -d "$parent/.kernel-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

log "downloading $pkg (apt-get download)"
(cd "$work" && apt-get download -q "$pkg" >&2)
deb="$(ls "$work"/*.deb | head -n1)"
log "unpacking $(basename "$deb")"
dpkg -x "$deb" "$work/root"

vmlinuz="$(ls "$work"/root/boot/vmlinuz-* | head -n1)"
ver="${vmlinuz##*/vmlinuz-}"
[ -d "$work/root/lib/modules/$ver" ] || { log "package has no lib/modules/$ver"; exit 1; }

# Find the xz stream (magic FD 37 7A 58 5A 00) inside the bzImage and decompress it.
# --single-stream stops at the end of the first stream and ignores the trailer.
off="$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -n1 | cut -d: -f1 || true)"
[ -n "$off" ] || { log "no xz stream found in $vmlinuz (kernel not xz-compressed?)"; exit 1; }
tail -c +"$((off + 1))" "$vmlinuz" | xz -dc --single-stream > "$work/vmlinux" 2>/dev/null || true
if [ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" != 7f454c46 ]; then
  log "decompressed kernel is not an ELF file"; exit 1
fi

mkdir -p "$work/out/lib/modules"
mv "$work/vmlinux" "$work/out/vmlinux"
mv "$work/root/lib/modules/$ver" "$work/out/lib/modules/$ver"
# The .deb ships no modules.dep (dpkg's postinst runs depmod); generate it here so
# the initramfs builder can read the dependency order instead of hard-coding it.
if command -v depmod >/dev/null; then
  depmod -b "$work/out" "$ver"
else
  log "depmod (kmod) not found: the initramfs builder will fall back to modinfo"
fi
echo "$ver" > "$work/out/version"
echo "$pkg" > "$work/out/package"
touch "$work/out/.complete"

# Replace atomically enough: an incomplete previous attempt is moved aside first.
if [ -e "$DIR" ]; then rm -rf "$DIR.old.$$"; mv "$DIR" "$DIR.old.$$"; fi
mv "$work/out" "$DIR"
rm -rf "$DIR.old.$$"
log "kernel $ver ready in $DIR"
echo "$DIR"
