#!/usr/bin/env bash
# Make sure a Docker engine (and the tools the CI image builds need) is
# installed and running on this machine.
#
# CI starts on a fresh Debian bookworm machine with no Docker engine and no
# systemd, so this script:
#   1. apt-installs what is missing (docker.io, docker-compose, debootstrap,
#      iproute2, iptables) — nothing is installed when everything is present;
#   2. starts dockerd directly in the background (log: $ISORUN_DOCKERD_LOG)
#      when `docker info` does not answer;
#   3. waits up to $ISORUN_DOCKER_WAIT seconds for `docker info`.
# It is idempotent: a second run only checks and prints "already ...".
#
# Env:
#   ISORUN_DOCKERD_LOG   dockerd log file        (default /var/log/dockerd.log)
#   ISORUN_DOCKER_WAIT   seconds to wait         (default 60)
set -euo pipefail

DOCKERD_LOG="${ISORUN_DOCKERD_LOG:-/var/log/dockerd.log}"
WAIT_SECONDS="${ISORUN_DOCKER_WAIT:-60}"

log() { printf '[ensure-docker] %s\n' "$*"; }
die() { printf '[ensure-docker] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, starts dockerd)"

# --- 1. packages -------------------------------------------------------------
# Map "command we need" -> "Debian package that provides it". We test for the
# daemon binary rather than the `docker` CLI: some machines ship a standalone
# docker client (e.g. /usr/local/bin/docker) without an engine.
declare -a missing=()
need() { # need <command> <package>
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ] && [ ! -x "/sbin/$1" ]; then
    missing+=("$2")
  fi
}
need dockerd        docker.io
need docker         docker.io
need docker-compose docker-compose
need debootstrap    debootstrap
need ip             iproute2
need iptables       iptables

if [ "${#missing[@]}" -eq 0 ]; then
  log "packages: already installed (dockerd, docker, docker-compose, debootstrap, ip, iptables)"
else
  # De-duplicate (docker.io can be listed twice).
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "packages: installing ${missing[*]}"
  # There is no init system here: keep the packages' maintainer scripts from
  # trying to start services (we start dockerd ourselves below, in a known
  # way). Only add the policy file if the machine does not have one already,
  # and remove only what we added.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    added_policy=1
  fi
  cleanup_policy() { if [ "$added_policy" -eq 1 ]; then rm -f "$policy"; fi; }
  trap cleanup_policy EXIT
  export DEBIAN_FRONTEND=noninteractive
  # Wait (up to 5 min) for another apt/dpkg run to finish instead of failing.
  apt_opts=(-o DPkg::Lock::Timeout=300)
  apt-get "${apt_opts[@]}" update -qq
  # With Recommends (apparmor, cgroupfs-mount, xz-utils, git...): the same set
  # a plain `apt-get install docker.io` gives a developer's machine, so CI
  # and developers run the same engine setup.
  apt-get "${apt_opts[@]}" install -y -qq "${missing[@]}" >/dev/null
  log "packages: installed ${missing[*]}"
fi

# --- 2. daemon -----------------------------------------------------------------
docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

if docker_ok; then
  log "dockerd: already running ($(docker info --format '{{.ServerVersion}}' 2>/dev/null), storage driver $(docker info --format '{{.Driver}}' 2>/dev/null))"
  exit 0
fi

dockerd_pid() { { pgrep -x dockerd 2>/dev/null || pidof dockerd 2>/dev/null || true; } | awk '{print $1; exit}'; }

if [ -n "$(dockerd_pid)" ]; then
  # A dockerd exists but does not answer yet (probably still starting, e.g.
  # started by a parallel run of this script): wait for it instead of
  # starting a second one, which would fail on the pid file anyway.
  log "dockerd: process $(dockerd_pid) exists but does not answer yet; waiting"
else
  # A stale pid file from a killed dockerd makes a new one refuse to start.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
    log "dockerd: removing stale /var/run/docker.pid"
    rm -f /var/run/docker.pid
  fi
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  log "dockerd: starting in the background (log: $DOCKERD_LOG)"
  # setsid + nohup: detach from this script's session so dockerd survives the
  # script (and CI step) that started it. stdin from /dev/null so it never
  # holds a terminal or pipe open.
  setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
fi

# --- 3. wait -------------------------------------------------------------------
wait_start=$SECONDS
deadline=$((SECONDS + WAIT_SECONDS))
until docker_ok; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "dockerd: last lines of $DOCKERD_LOG:" >&2
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    die "docker info did not answer within ${WAIT_SECONDS}s (see $DOCKERD_LOG)"
  fi
  if [ -z "$(dockerd_pid)" ]; then
    log "dockerd: last lines of $DOCKERD_LOG:" >&2
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    die "dockerd exited during start-up (see $DOCKERD_LOG)"
  fi
  sleep 1
done
log "dockerd: ready after $((SECONDS - wait_start))s ($(docker info --format '{{.ServerVersion}}'), storage driver $(docker info --format '{{.Driver}}'))"
