#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu machine to running microVMs (README, "Quick start"):
#
#   bash scripts/setup.sh
#
# It runs as root: in a root shell as it is; as another user it starts itself again through
# sudo (passing on the MONOCORE_* variables you set), and without sudo it says how to run it.
#
# 1. installs every system package (scripts/install-deps.sh) and the npm workspace (npm ci),
#    builds it and puts `monocore` and its alias `mc` on the PATH (/usr/local/bin);
# 2. fetches the guest kernel from the distribution (scripts/guest-kernel.sh);
# 3. starts a registry on loopback holding a small busybox image (no internet needed), so
#    the example runs anywhere — the same script the tests use (scripts/test-services.sh);
# 4. runs the main job on the embedded default: the local daemon (`monocore daemon start`:
#    `monocore serve`, API + puller + worker in one process with its own local Redis, detached,
#    state in $MONOCORE_HOME, default ~/.monocore), then `monocore up -f examples/monocore.toml`,
#    `monocore status` and the services' logs.
#
# Idempotent: re-running skips what is done and reuses a running daemon.
# Stop everything: `monocore down && monocore daemon stop`.
set -euo pipefail
here="${BASH_SOURCE[0]%/*}"
[ "$here" = "${BASH_SOURCE[0]}" ] && here=.
ROOT="$(cd "$here/.." && pwd)"

# Root is needed for the packages, /usr/local/bin and QEMU's per-VM uids. Only shell builtins
# here: this must work on a minimal machine, where sudo may well be missing.
if [ "$EUID" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    echo "setup.sh: not root; running it again with sudo" >&2
    pass=()
    while IFS= read -r name; do pass+=("$name=${!name}"); done < <(compgen -e | { grep '^MONOCORE_' || true; })
    exec sudo -- env "${pass[@]}" bash "$ROOT/scripts/setup.sh" "$@"
  fi
  echo "setup.sh: needs root (system packages, /usr/local/bin, QEMU's per-VM uids), and sudo is not installed:" >&2
  echo "  run it in a root shell (e.g. su -c 'bash $ROOT/scripts/setup.sh'), or install sudo" >&2
  exit 1
fi
cd "$ROOT"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "system packages"
bash scripts/install-deps.sh

say "npm workspace: install and build"
npm ci --no-audit --no-fund
npm run build

say "the monocore command (and its alias mc)"
BIN_DIR=/usr/local/bin
[ -w "$BIN_DIR" ] || BIN_DIR="$HOME/.local/bin"
mkdir -p "$BIN_DIR"
for name in monocore mc; do ln -sf "$ROOT/apps/cli/dist/main.js" "$BIN_DIR/$name"; done
chmod +x "$ROOT/apps/cli/dist/main.js"
command -v monocore >/dev/null || echo "note: add $BIN_DIR to your PATH"
MONOCORE="$BIN_DIR/monocore"
"$MONOCORE" --version

say "guest kernel"
kernel_dir="$(bash scripts/guest-kernel.sh | tail -n1)"
export MONOCORE_KERNEL_DIR="$kernel_dir"
echo "kernel: $kernel_dir"

say "local registry with the example image (loopback only)"
bash scripts/test-services.sh start

say "the local daemon: monocore serve, detached (embedded Redis, state in \$MONOCORE_HOME)"
export MONOCORE_HOME="${MONOCORE_HOME:-$HOME/.monocore}"
# `monocore up` would start it by itself; started here so a failure shows as its own step.
"$MONOCORE" daemon start
"$MONOCORE" daemon status || true   # exit 1 when the API answering is a `monocore serve` started by hand

say "monocore up -f examples/monocore.toml"
"$MONOCORE" validate -f examples/monocore.toml
"$MONOCORE" up -f examples/monocore.toml

say "monocore status"
"$MONOCORE" status
sleep 4
for svc in sh-counter date-counter; do
  say "monocore logs $svc"
  "$MONOCORE" logs "$svc" -n 5 || true
done

cat <<MSG

monocore is running: API on http://127.0.0.1:3456 (Bull Board: /admin/queues, OpenAPI: /docs).
  monocore status            # watch the services
  monocore down              # stop them
  monocore daemon stop      # stop the daemon (and every VM it runs)
MSG
