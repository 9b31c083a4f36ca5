#!/usr/bin/env bash
# Real services for monocore's tests: start | stop | status   (idempotent)
#
#   redis-server       127.0.0.1:16379  AOF on, maxmemory-policy noeviction,
#                                       data in .monocore-test/redis, log .monocore-test/redis.log
#   docker-registry    127.0.0.1:15000  Debian's CNCF distribution, plain HTTP on loopback,
#                                       storage .monocore-test/registry, deletes enabled,
#                                       log .monocore-test/registry.log
#   test images        monocore-test/busybox:latest and monocore-test/busybox-layered:latest
#                                       (scripts/build-test-images.sh: umoci + skopeo)
#   guest kernel       scripts/guest-kernel.sh (VM engineer's script), when present
#
# `start` writes .monocore-test/env.sh exporting MONOCORE_TEST_REDIS_URL,
# MONOCORE_TEST_REGISTRY, MONOCORE_TEST_IMAGE, MONOCORE_TEST_IMAGE_LAYERED, MONOCORE_TEST_IMAGE_PYTHON,
# MONOCORE_TEST_KERNEL_DIR (when the kernel script exists) and MONOCORE_TEST_STATE_DIR.
#
# Ports: 16379 / 15000 by default; MONOCORE_TEST_REDIS_PORT / MONOCORE_TEST_REGISTRY_PORT
# force others. The ports in use are remembered in .monocore-test/ports (so stop/status
# and the next start find the same services).
#
# A port that is already taken when starting:
#   - by OUR service (this checkout's pidfile names the listening process) -> reused;
#   - by ANOTHER checkout's monocore test service (a Redis whose data dir ends in
#     /.monocore-test/redis, a docker-registry serving .../.monocore-test/registry.yml),
#     e.g. a clean clone run beside the main tree -> this checkout does NOT share it (queues,
#     keys and workers of two test runs would mix): it starts its own on a free port derived
#     from the checkout path (16380.. / 15001..), says so, and remembers it. With an
#     explicitly forced port it fails instead;
#   - by anything else -> loud failure naming the port and the process.
# `stop` only ever stops the services this checkout started (pidfiles), and with them the Docker
# engine test/compose/compose.test.ts started for this checkout (scripts/docker-engine.sh), if any.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="$ROOT/.monocore-test"
PORTS_FILE="$STATE/ports"
REDIS_PORT=16379
REGISTRY_PORT=15000
# shellcheck disable=SC1090
[ -f "$PORTS_FILE" ] && . "$PORTS_FILE"
REDIS_PORT="${MONOCORE_TEST_REDIS_PORT:-$REDIS_PORT}"
REGISTRY_PORT="${MONOCORE_TEST_REGISTRY_PORT:-$REGISTRY_PORT}"
REDIS_DIR="$STATE/redis"
REDIS_PID="$STATE/redis.pid"
REDIS_LOG="$STATE/redis.log"
REGISTRY_DIR="$STATE/registry"
REGISTRY_CONF="$STATE/registry.yml"
REGISTRY_PID="$STATE/registry.pid"
REGISTRY_LOG="$STATE/registry.log"
REGISTRY="127.0.0.1:$REGISTRY_PORT"

log() { echo "test-services: $*" >&2; }
die() { echo "test-services: ERROR: $*" >&2; exit 1; }

# Installs what is missing (scripts/install-deps.sh, apt-get) before giving up.
need() {
  local missing=() c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "missing commands: ${missing[*]} — running scripts/install-deps.sh"
  bash "$ROOT/scripts/install-deps.sh" >&2 || die "scripts/install-deps.sh failed; missing: ${missing[*]}"
  for c in "${missing[@]}"; do
    command -v "$c" >/dev/null 2>&1 || die "command '$c' still missing after scripts/install-deps.sh"
  done
}

# pid of the process listening on 127.0.0.1:PORT (empty when none / unknown)
listener_pid() {
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true
}
port_in_use() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pidfile_pid() { [ -f "$1" ] && tr -dc '0-9' <"$1" || true; }

# A free port for this checkout: BASE+1+(hash of the checkout path mod 400), then upwards.
free_port() {
  local base="$1" h p i
  h="$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
  p=$((base + 1 + h % 400))
  for i in $(seq 1 100); do
    port_in_use "$p" || { echo "$p"; return 0; }
    p=$((p + 1))
  done
  die "no free port found above $base"
}
save_ports() {
  printf 'REDIS_PORT=%s\nREGISTRY_PORT=%s\n' "$REDIS_PORT" "$REGISTRY_PORT" >"$PORTS_FILE.tmp"
  mv "$PORTS_FILE.tmp" "$PORTS_FILE"
}

redis_ping() { timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -qx PONG; }
registry_ping() { curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY/v2/" 2>/dev/null; }

# wait_for NAME LOGFILE CHECK-FUNCTION: bounded retries (~20 s), loud failure
wait_for() {
  local name="$1" logfile="$2" check="$3" i
  for i in $(seq 1 100); do
    if "$check"; then return 0; fi
    sleep 0.2
  done
  echo "----- last lines of $logfile -----" >&2
  tail -n 30 "$logfile" >&2 2>/dev/null || true
  die "$name did not answer within 20 s (see $logfile)"
}

# ---------------------------------------------------------------- redis
start_redis() {
  if port_in_use "$REDIS_PORT"; then
    local pid ours dir
    pid="$(listener_pid "$REDIS_PORT")"
    ours="$(pidfile_pid "$REDIS_PID")"
    if [ -n "$pid" ] && [ "$pid" = "$ours" ]; then
      redis_ping || die "our redis (pid $pid, 127.0.0.1:$REDIS_PORT) does not answer PING (see $REDIS_LOG);" \
        "run: bash scripts/test-services.sh restart"
      local dbs
      dbs="$(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" config get databases 2>/dev/null | sed -n 2p || true)"
      if [ "${dbs:-0}" -ge 64 ]; then
        log "redis already running on 127.0.0.1:$REDIS_PORT (pid $pid)"
        return 0
      fi
      # Started by an older version of this script (16 databases): the tests now need 64.
      log "restarting our redis (pid $pid): it has ${dbs:-?} databases, the tests need 64"
      timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do port_in_use "$REDIS_PORT" || break; sleep 0.1; done
      port_in_use "$REDIS_PORT" && die "our old redis (pid $pid) did not stop"
      start_redis
      return 0
    fi
    dir="$(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" config get dir 2>/dev/null | sed -n 2p || true)"
    case "$dir" in
      */.monocore-test/redis)
        [ -z "${MONOCORE_TEST_REDIS_PORT:-}" ] \
          || die "MONOCORE_TEST_REDIS_PORT=$REDIS_PORT is taken by another checkout's test Redis (data dir $dir)"
        local old="$REDIS_PORT"
        REDIS_PORT="$(free_port 16379)"
        log "NOTICE: 127.0.0.1:$old is another checkout's test Redis ($dir); this checkout gets its own on 127.0.0.1:$REDIS_PORT"
        start_redis
        return 0 ;;
    esac
    die "port 127.0.0.1:$REDIS_PORT is taken by something that is not monocore's test Redis" \
        "(pid ${pid:-unknown}: $(tr '\0' ' ' </proc/"${pid:-0}"/cmdline 2>/dev/null || echo '?'))." \
        "Stop it or set MONOCORE_TEST_REDIS_PORT."
  fi
  mkdir -p "$REDIS_DIR"
  rm -f "$REDIS_PID"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --daemonize yes --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" \
    --dir "$REDIS_DIR" --appendonly yes --appendfsync everysec \
    --maxmemory-policy noeviction --save "" --databases 64 9>&- \
    || die "redis-server failed to start (see $REDIS_LOG)"
  wait_for "redis (127.0.0.1:$REDIS_PORT)" "$REDIS_LOG" redis_ping
  log "redis up on 127.0.0.1:$REDIS_PORT (AOF in $REDIS_DIR)"
}

stop_redis() {
  local pid
  pid="$(pidfile_pid "$REDIS_PID")"
  if pid_alive "$pid"; then
    # SHUTDOWN flushes the AOF; fall back to SIGTERM.
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && die "redis (pid $pid) did not stop"
    log "redis stopped"
  else
    log "redis not running (from this checkout)"
  fi
  rm -f "$REDIS_PID"
}

# ---------------------------------------------------------------- registry
write_registry_conf() {
  mkdir -p "$REGISTRY_DIR"
  cat >"$REGISTRY_CONF.tmp" <<EOF
# generated by scripts/test-services.sh — do not edit
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REGISTRY
  secret: monocore-test-only
  headers:
    X-Content-Type-Options: [nosniff]
EOF
  mv "$REGISTRY_CONF.tmp" "$REGISTRY_CONF"
}

start_registry() {
  if port_in_use "$REGISTRY_PORT"; then
    local pid ours cmd
    pid="$(listener_pid "$REGISTRY_PORT")"
    ours="$(pidfile_pid "$REGISTRY_PID")"
    cmd="$(tr '\0' ' ' </proc/"${pid:-0}"/cmdline 2>/dev/null || true)"
    if [ -n "$pid" ] && [ "$pid" = "$ours" ]; then
      wait_for "docker-registry ($REGISTRY, pid $pid)" "$REGISTRY_LOG" registry_ping
      log "registry already running on $REGISTRY (pid $pid)"
      return 0
    fi
    case "$cmd" in
      *docker-registry\ serve\ */.monocore-test/registry.yml*)
        [ -z "${MONOCORE_TEST_REGISTRY_PORT:-}" ] \
          || die "MONOCORE_TEST_REGISTRY_PORT=$REGISTRY_PORT is taken by another checkout's test registry ($cmd)"
        local old="$REGISTRY"
        REGISTRY_PORT="$(free_port 15000)"
        REGISTRY="127.0.0.1:$REGISTRY_PORT"
        log "NOTICE: $old is another checkout's test registry ($cmd); this checkout gets its own on $REGISTRY"
        start_registry
        return 0 ;;
    esac
    die "port $REGISTRY is taken by something that is not monocore's test registry" \
        "(pid ${pid:-unknown}: ${cmd:-?}). Stop it or set MONOCORE_TEST_REGISTRY_PORT."
  fi
  write_registry_conf
  rm -f "$REGISTRY_PID"
  # setsid: its own session, so it survives the calling shell and test runner.
  setsid docker-registry serve "$REGISTRY_CONF" >>"$REGISTRY_LOG" 2>&1 </dev/null 9>&- &
  echo $! >"$REGISTRY_PID"
  wait_for "docker-registry ($REGISTRY)" "$REGISTRY_LOG" registry_ping
  log "registry up on $REGISTRY (storage $REGISTRY_DIR, pid $(pidfile_pid "$REGISTRY_PID"))"
}

stop_registry() {
  local pid
  pid="$(pidfile_pid "$REGISTRY_PID")"
  if pid_alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && { kill -9 "$pid" 2>/dev/null || true; }
    log "registry stopped"
  else
    log "registry not running (from this checkout)"
  fi
  rm -f "$REGISTRY_PID"
}

# ---------------------------------------------------------------- .monocore-test/env.sh
write_env() {
  local kernel_dir="$1" f="$STATE/env.sh"
  {
    echo "# generated by scripts/test-services.sh start — source it: . .monocore-test/env.sh"
    echo "export MONOCORE_TEST_REDIS_URL='redis://127.0.0.1:$REDIS_PORT'"
    echo "export MONOCORE_TEST_REGISTRY='$REGISTRY'"
    echo "export MONOCORE_TEST_IMAGE='$REGISTRY/monocore-test/busybox:latest'"
    echo "export MONOCORE_TEST_IMAGE_LAYERED='$REGISTRY/monocore-test/busybox-layered:latest'"
    echo "export MONOCORE_TEST_IMAGE_PYTHON='$REGISTRY/monocore-test/python:latest'"
    echo "export MONOCORE_TEST_STATE_DIR='$STATE'"
    if [ -n "$kernel_dir" ]; then
      echo "export MONOCORE_TEST_KERNEL_DIR='$kernel_dir'"
    fi
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

guest_kernel() {
  local script="$ROOT/scripts/guest-kernel.sh" out dir
  if [ ! -x "$script" ]; then
    log "scripts/guest-kernel.sh not present (yet): MONOCORE_TEST_KERNEL_DIR not set"
    return 0
  fi
  out="$("$script" 9>&-)" || die "scripts/guest-kernel.sh failed (exit $?); run it by hand to see why"
  dir="$(printf '%s\n' "$out" | sed '/^[[:space:]]*$/d' | tail -n1)"
  [ -d "$dir" ] || die "scripts/guest-kernel.sh printed '$dir', which is not a directory"
  echo "$dir"
}

cmd_start() {
  need redis-server redis-cli docker-registry curl ss setsid flock
  mkdir -p "$STATE" "$STATE/tmp"
  # One `start` at a time per checkout (several test runs may call it at once).
  exec 9>"$STATE/.lock"
  flock -w 600 9 || die "timed out waiting for another 'test-services.sh start' ($STATE/.lock)"
  start_redis
  start_registry
  save_ports
  MONOCORE_TEST_REGISTRY="$REGISTRY" bash "$ROOT/scripts/build-test-images.sh" 9>&- \
    || die "building/pushing the test images failed (see output above)"
  local kernel_dir
  kernel_dir="$(guest_kernel)"
  write_env "$kernel_dir"
  log "ready: . $STATE/env.sh"
}

cmd_stop() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 600 9 || die "timed out waiting for the lock $STATE/.lock"
  stop_registry
  stop_redis
  # The Docker engine the compose test started for this checkout, if it did (never another's or
  # the system's: scripts/docker-engine.sh stops only the one its pidfile names).
  bash "$ROOT/scripts/docker-engine.sh" stop
  # Tests then fail with "run: bash scripts/test-services.sh start", not a refused connection.
  rm -f "$STATE/env.sh"
}

cmd_status() {
  local rc=0 pid
  if redis_ping; then
    pid="$(listener_pid "$REDIS_PORT")"
    if [ -n "$pid" ] && [ "$pid" = "$(pidfile_pid "$REDIS_PID")" ]; then echo "redis:    up   127.0.0.1:$REDIS_PORT (pid $pid, this checkout)"
    else echo "redis:    up   127.0.0.1:$REDIS_PORT (not started by this checkout)"; fi
  else echo "redis:    DOWN 127.0.0.1:$REDIS_PORT (log $REDIS_LOG)"; rc=1; fi
  if registry_ping; then
    pid="$(listener_pid "$REGISTRY_PORT")"
    if [ -n "$pid" ] && [ "$pid" = "$(pidfile_pid "$REGISTRY_PID")" ]; then echo "registry: up   $REGISTRY (pid $pid, this checkout)"
    else echo "registry: up   $REGISTRY (not started by this checkout)"; fi
    for repo in busybox busybox-layered; do
      if curl -fsS -o /dev/null --max-time 5 \
          -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
          "http://$REGISTRY/v2/monocore-test/$repo/manifests/latest"; then
        echo "image:    ok   $REGISTRY/monocore-test/$repo:latest"
      else echo "image:    MISSING $REGISTRY/monocore-test/$repo:latest"; rc=1; fi
    done
  else echo "registry: DOWN $REGISTRY (log $REGISTRY_LOG)"; rc=1; fi
  if [ -f "$STATE/env.sh" ]; then echo "env:      $STATE/env.sh"; cat "$STATE/env.sh" | grep '^export' | sed 's/^/          /'
  else echo "env:      MISSING $STATE/env.sh (run: bash scripts/test-services.sh start)"; rc=1; fi
  return $rc
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
