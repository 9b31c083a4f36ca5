#!/usr/bin/env bash
# A Docker engine for this checkout's tests and benchmarks: start | stop | status | env
# (idempotent).
#
#   eval "$(bash scripts/docker-engine.sh start)"   # exports DOCKER_HOST
#   docker ps
#
# `start` uses an engine that already answers (DOCKER_HOST if set, else /var/run/docker.sock)
# and otherwise starts Debian's dockerd (package docker.io) by hand, as this checkout's own:
#
#   socket        .monocore-test/docker/docker.sock
#   data-root     .monocore-test/docker/data      (images, containers, volumes, build cache)
#   exec-root     .monocore-test/docker/run       (containerd's state, netns; a short path under
#                                                  /run instead when the checkout's path is too long
#                                                  for unix sockets)
#   log, pidfile  .monocore-test/docker/dockerd.{log,pid}
#
# Nothing a container sends can leave the machine: this engine runs with --ip-forward=false
# (the host never routes a container's packets anywhere), --iptables=false (no NAT, and no
# rewriting of iptables chains another checkout's engine may own) and --bridge=none (no
# default docker0 bridge shared between engines). Containers reach each other on the
# networks compose creates, the host's loopback reaches published ports through docker-proxy,
# and `docker build --network host` builds use the host's own network for package downloads.
# storage-driver overlay2; no --privileged anywhere (the host's capability bounding set lacks
# CAP_SYS_RESOURCE, so a privileged container cannot start here).
#
# Prints `export DOCKER_HOST=unix://…` on the last line of stdout (progress on stderr);
# `env` prints it without starting anything. `stop` only stops an engine this checkout started
# (and unmounts what it leaves in its data and exec roots).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="$ROOT/.monocore-test/docker"
SOCK="$STATE/docker.sock"
PIDFILE="$STATE/dockerd.pid"
LOG="$STATE/dockerd.log"
DATA="$STATE/data"

log() { echo "docker-engine: $*" >&2; }
die() { echo "docker-engine: ERROR: $*" >&2; exit 1; }

# Debian's client matches Debian's engine (no buildx plugin: builds use the classic builder).
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi

# The exec-root holds containerd's sockets (…/containerd/containerd.sock, ~40 more characters):
# a unix socket path must stay under 108 bytes.
exec_root() {
  local r="$STATE/run"
  if [ ${#r} -le 60 ]; then echo "$r"
  else echo "/run/monocore-docker-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"; fi
}

pidfile_pid() { [ -f "$PIDFILE" ] && tr -dc '0-9' <"$PIDFILE" || true; }
pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
answers() { DOCKER_HOST="$1" timeout 20 "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# The engine to use, if one answers: $DOCKER_HOST, then the system socket, then ours.
running_host() {
  if [ -n "${DOCKER_HOST:-}" ]; then
    answers "$DOCKER_HOST" && { echo "$DOCKER_HOST"; return 0; }
    return 1
  fi
  [ -S /var/run/docker.sock ] && answers unix:///var/run/docker.sock && { echo unix:///var/run/docker.sock; return 0; }
  [ -S "$SOCK" ] && answers "unix://$SOCK" && { echo "unix://$SOCK"; return 0; }
  return 1
}

need_engine() {
  local missing=() c
  for c in dockerd containerd runc; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  [ -x /usr/bin/docker ] || command -v docker >/dev/null 2>&1 || missing+=(docker)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "missing: ${missing[*]} — running scripts/install-deps.sh"
  bash "$ROOT/scripts/install-deps.sh" >&2 || die "scripts/install-deps.sh failed; missing: ${missing[*]}"
  for c in "${missing[@]}"; do command -v "$c" >/dev/null 2>&1 || die "'$c' still missing after scripts/install-deps.sh"; done
}

cmd_start() {
  local host
  if host="$(running_host)"; then
    log "engine answers at $host"
    echo "export DOCKER_HOST=$host"
    return 0
  fi
  [ -z "${DOCKER_HOST:-}" ] || die "DOCKER_HOST=$DOCKER_HOST does not answer (unset it to let this script start an engine)"
  [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and starting one needs root"
  need_engine
  mkdir -p "$STATE"
  exec 8>"$STATE/.lock"
  flock -w 300 8 || die "timed out waiting for another start ($STATE/.lock)"
  if [ -S "$SOCK" ] && answers "unix://$SOCK"; then echo "export DOCKER_HOST=unix://$SOCK"; return 0; fi
  local old run i
  old="$(pidfile_pid)"
  if pid_alive "$old"; then die "dockerd (pid $old) runs but does not answer on $SOCK (see $LOG); run: bash scripts/docker-engine.sh stop"; fi
  run="$(exec_root)"
  mkdir -p "$DATA" "$run"
  rm -f "$SOCK" "$PIDFILE"
  log "starting dockerd (data $DATA, exec $run, log $LOG)"
  # setsid: its own session, so it outlives the test run that started it (like the test Redis).
  # No descriptor but /dev/null and its log: it and its containerd run on after the test run, and
  # a pipe they inherited (the test runner's, a CI harness's, this script's caller's) would stay
  # open as long as they run, and whoever reads it would wait for its end.
  (
    me=$BASHPID
    for fd in $(ls "/proc/$me/fd"); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
    exec setsid dockerd \
      --host "unix://$SOCK" --pidfile "$PIDFILE" --data-root "$DATA" --exec-root "$run" \
      --storage-driver overlay2 --bridge none --iptables=false --ip-forward=false --ip-masq=false \
      --log-level warn
  ) >>"$LOG" 2>&1 </dev/null &
  for i in $(seq 1 300); do
    answers "unix://$SOCK" && break
    if [ "$i" -gt 5 ] && ! pid_alive "$(pidfile_pid)" && ! pid_alive "$!"; then break; fi
    sleep 0.2
  done
  if ! answers "unix://$SOCK"; then
    echo "----- last lines of $LOG -----" >&2; tail -n 30 "$LOG" >&2 || true
    die "dockerd did not answer on $SOCK within 60 s"
  fi
  log "dockerd up (pid $(pidfile_pid)) on unix://$SOCK"
  echo "export DOCKER_HOST=unix://$SOCK"
}

cmd_stop() {
  local pid i m
  pid="$(pidfile_pid)"
  if pid_alive "$pid"; then
    kill "$pid"
    # dockerd stops its containers (their own stop timeouts) and its containerd first.
    for i in $(seq 1 600); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && die "dockerd (pid $pid) did not stop within 60 s"
    log "dockerd (pid $pid) stopped"
  else
    log "no engine of this checkout runs"
  fi
  # What a stopped dockerd leaves mounted (its netns/default; the data-root after a crash): a
  # checkout with a mount inside cannot be deleted. Deepest first; never under an engine that runs.
  if [ -S "$SOCK" ] && answers "unix://$SOCK"; then
    log "an engine without our pidfile answers on $SOCK: its mounts are left alone"; return 0
  fi
  while read -r m; do
    umount "$m" 2>/dev/null && log "unmounted $m" || log "could not unmount $m"
  done < <(awk -v s="$STATE/" -v r="$(exec_root)/" 'index($5, s) == 1 || index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

cmd_status() {
  local host
  if host="$(running_host)"; then
    echo "docker:   up   $host ($(DOCKER_HOST="$host" "$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null))"
  else
    echo "docker:   DOWN (no DOCKER_HOST, /var/run/docker.sock or $SOCK answers)"; return 1
  fi
}

cmd_env() {
  local host
  host="$(running_host)" || die "no Docker engine answers; run: bash scripts/docker-engine.sh start"
  echo "export DOCKER_HOST=$host"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
