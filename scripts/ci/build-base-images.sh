#!/usr/bin/env bash
# Build the local base images that CI and the end-to-end tests use.
#
# This machine reaches Debian's package mirror and the npm registry but no
# image registry, so `docker pull node:20-bookworm-slim` is impossible. We make
# the images ourselves:
#
#   isorun-ci/node:20          minbase bookworm + ca-certificates + this
#                              machine's Node 20 (stripped) + npm, laid out like
#                              the official node image (/usr/local/bin/node).
#                              Used as BASE_IMAGE for the product Dockerfile.
#                              No tini: the product relies on `docker run
#                              --init` / compose `init: true` (docker-init).
#   isorun-ci/sandbox:bookworm minbase bookworm + ca-certificates curl python3
#                              python3-pip dnsutils iproute2 netcat-openbsd:
#                              the "untrusted agent sandbox" of the e2e tests.
#
# How: `debootstrap --variant=minbase` into a tree, trim docs, then
# `tar | docker import`. Trees are cached under $ISORUN_CI_CACHE/rootfs, keyed
# by a hash of everything that goes into them, so a rebuild after
# `docker rmi` (or with --force) takes seconds instead of a full debootstrap.
# Downloaded .debs are cached too (debootstrap --cache-dir).
#
# Usage: build-base-images.sh [--force] [--refresh] [node] [sandbox]
#   (no image names = all images)
#   --force    rebuild images that already exist (reuses cached trees)
#   --refresh  also discard the cached trees and re-run debootstrap (implies --force)
# Env:
#   ISORUN_CI_CACHE        cache dir           (default /var/cache/isorun-ci)
#   ISORUN_DEBIAN_MIRROR   Debian mirror URL   (default: the one the host's apt uses)
#   ISORUN_CI_NODE_BIN     node binary to copy (default: `command -v node`)
#   ISORUN_CI_NPM_DIR      npm package dir     (default: found from `command -v npm`)
set -euo pipefail

SUITE=bookworm
CACHE="${ISORUN_CI_CACHE:-/var/cache/isorun-ci}"
# Bump when the way trees are made changes, so old cached trees are not reused.
RECIPE_VERSION=2

NODE_IMAGE=isorun-ci/node:20
SANDBOX_IMAGE=isorun-ci/sandbox:bookworm
NODE_PACKAGES=ca-certificates
SANDBOX_PACKAGES=ca-certificates,curl,python3,python3-pip,dnsutils,iproute2,netcat-openbsd

log() { printf '[base-images] %s\n' "$*"; }
die() { printf '[base-images] ERROR: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

force=0
refresh=0
declare -a wanted=()
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --refresh) force=1; refresh=1 ;;
    -h|--help) usage; exit 0 ;;
    node|sandbox) wanted+=("$arg") ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done
[ "${#wanted[@]}" -gt 0 ] || wanted=(node sandbox)

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap)"
command -v docker >/dev/null || die "docker not found: run scripts/ci/ensure-docker.sh first"
docker info >/dev/null 2>&1 || die "docker engine not answering: run scripts/ci/ensure-docker.sh first"
if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq debootstrap >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

mkdir -p "$CACHE/rootfs" "$CACHE/debs"
# Serialise concurrent runs (e.g. two test set-ups at once): they would race
# on the same cached trees and image tags.
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  log "another build-base-images.sh is running; waiting for its lock"
  flock 9
fi

# --- helpers -------------------------------------------------------------------

# The Debian mirror the host's apt uses for $SUITE (deb822 .sources or one-line
# .list files), so the images come from the same (reachable) place.
detect_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk -v suite="$SUITE" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && suites ~ ("(^| )" suite "( |$)") && enabled != "no" && uris != "") {
          split(uris, u, " "); print u[1]; found = 1; exit
        }
        types = ""; uris = ""; suites = ""; enabled = ""
      }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]*#/ { next }
      tolower($1) == "types:"   { $1 = ""; types = $0 }
      tolower($1) == "uris:"    { $1 = ""; sub(/^ +/, ""); uris = $0 }
      tolower($1) == "suites:"  { $1 = ""; suites = $0 }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      END { if (!found) flush() }
    ' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE components...
    uri=$(awk -v suite="$SUITE" '
      $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  echo "http://deb.debian.org/debian"
}

# Unmount anything debootstrap may have left mounted below $1 (it mounts
# proc/sys in the target and can leave them behind when it fails), then
# delete the tree without ever crossing into another file system.
remove_tree() {
  local dir="$1" m
  [ -e "$dir" ] || return 0
  # Deepest mount points first.
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$dir"
}

declare -a TEMP_DIRS=()
cleanup() {
  local d
  for d in "${TEMP_DIRS[@]}"; do remove_tree "$d"; done
}
trap cleanup EXIT
# Turn Ctrl-C / CI cancellation into a normal exit so the EXIT trap runs.
trap 'exit 130' INT TERM

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Make (or reuse) the cached debootstrap tree for a package list; sets TREE to
# its path. (Not `$(ensure_tree ...)`: a subshell could not register its temp
# dir for the cleanup trap.)
TREE=
ensure_tree() {
  local name="$1" packages="$2" key dir tmp t0
  key=$(printf '%s\n' "$RECIPE_VERSION" "$SUITE" "$MIRROR" "$packages" | sha256sum | cut -c1-12)
  dir="$CACHE/rootfs/$name-$key"
  if [ "$refresh" -eq 1 ] && [ -d "$dir" ]; then
    log "$name: --refresh: discarding cached tree $dir"
    remove_tree "$dir"
  fi
  if [ -f "$dir/.isorun-ci-complete" ]; then
    log "$name: reusing cached tree $dir"
    TREE="$dir"; return
  fi
  # Build in a temp dir beside the final one and rename on success, so an
  # interrupted run never leaves a half-made tree that looks cached.
  tmp=$(mktemp -d "$CACHE/rootfs/.tmp-$name-XXXXXX")
  TEMP_DIRS+=("$tmp" "$tmp.log")
  # mktemp makes 0700 dirs; this one becomes the image's "/", which every
  # (non-root) user in the container must be able to traverse.
  chmod 0755 "$tmp"
  log "$name: debootstrap $SUITE minbase + $packages from $MIRROR"
  t0=$SECONDS
  if ! debootstrap --variant=minbase --include="$packages" --cache-dir="$CACHE/debs" \
      "$SUITE" "$tmp" "$MIRROR" >"$tmp.log" 2>&1; then
    tail -n 30 "$tmp.log" >&2
    tail -n 30 "$tmp/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    rm -f "$tmp.log"
    die "$name: debootstrap failed"
  fi
  rm -f "$tmp.log"
  log "$name: debootstrap done in $((SECONDS - t0))s"
  trim_tree "$tmp"
  touch "$tmp/.isorun-ci-complete"
  # Drop trees made for older package lists / recipes of this image.
  find "$CACHE/rootfs" -mindepth 1 -maxdepth 1 -type d -name "$name-*" ! -name "$name-$key" \
    -exec rm -rf --one-file-system {} +
  mv "$tmp" "$dir"
  TREE="$dir"
}

# Make the tree image-sized: no package caches or lists, no docs/man pages
# (keep copyright files), no logs. Also tell dpkg to skip docs for packages
# installed later in the image, like Debian's "slim" images do.
trim_tree() {
  local t="$1"
  umount -l "$t/proc" "$t/sys" 2>/dev/null || true
  rm -rf "$t"/var/cache/apt/archives/*.deb "$t"/var/cache/apt/*.bin \
         "$t"/var/lib/apt/lists/* "$t"/var/log/* "$t"/tmp/* "$t"/var/tmp/* \
         "$t"/usr/share/man/* "$t"/usr/share/info/* "$t"/usr/share/locale/* \
         "$t"/usr/share/lintian/* "$t"/usr/share/linda/* "$t"/debootstrap
  find "$t/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
  find "$t/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  mkdir -p "$t/etc/dpkg/dpkg.cfg.d"
  cat >"$t/etc/dpkg/dpkg.cfg.d/isorun-ci-slim" <<'CFG'
# isorun-ci: keep images small (like Debian's slim images)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
  # The image's hostname/resolv.conf/hosts are provided by Docker at run time.
  : >"$t/etc/hostname"
  rm -f "$t/etc/resolv.conf"
}

# tar a tree into `docker import`, smoke-test the result under a temporary
# tag, then tag it. A broken image is never left under the final tag (a rerun
# would skip it).
import_image() {
  local image="$1" tree="$2" smoke="$3" tmp_tag t0 size old_id
  shift 3
  tmp_tag="$image-candidate-$$"
  t0=$SECONDS
  # --exclude: the cache-completion marker is ours, not the image's.
  tar --numeric-owner --exclude=./.isorun-ci-complete -C "$tree" -c . |
    docker import "$@" - "$tmp_tag" >/dev/null
  # Smoke test as an unprivileged user: the product image runs as non-root
  # and the sandbox image runs untrusted code as whatever user it is given.
  if ! docker run --rm --network none --user 65534:65534 "$tmp_tag" sh -c "$smoke"; then
    docker rmi "$tmp_tag" >/dev/null 2>&1 || true
    die "$image: smoke test failed: $smoke"
  fi
  old_id=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  docker tag "$tmp_tag" "$image"
  docker rmi "$tmp_tag" >/dev/null
  # With --force, drop the image we replaced rather than leave it dangling
  # (fails harmlessly if a container or a child image such as isorun:local
  # still uses it).
  if [ -n "$old_id" ]; then docker rmi "$old_id" >/dev/null 2>&1 || true; fi
  size=$(docker image inspect --format '{{.Size}}' "$image")
  log "$image: imported and smoke-tested in $((SECONDS - t0))s ($((size / 1000000)) MB)"
}

COMMON_CHANGES=(
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  -c 'ENV LANG=C.UTF-8'
)

build_node() {
  local node_bin npm_dir node_version merged
  node_bin="${ISORUN_CI_NODE_BIN:-$(command -v node || true)}"
  if [ -z "$node_bin" ] || [ ! -x "$node_bin" ]; then
    die "no node binary found (install Node 20 or set ISORUN_CI_NODE_BIN)"
  fi
  node_bin=$(readlink -f "$node_bin")
  node_version=$("$node_bin" --version)
  case "$node_version" in v20.*) ;; *) die "$node_bin is $node_version, but $NODE_IMAGE needs Node 20" ;; esac
  if [ -n "${ISORUN_CI_NPM_DIR:-}" ]; then
    npm_dir="$ISORUN_CI_NPM_DIR"
  else
    # /usr/bin/npm -> ../lib/node_modules/npm/bin/npm-cli.js
    npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm || echo /nonexistent/bin/npm)" || true)")")
  fi
  [ -f "$npm_dir/bin/npm-cli.js" ] || die "npm not found at '$npm_dir' (set ISORUN_CI_NPM_DIR)"

  ensure_tree node "$NODE_PACKAGES"
  # Node goes on top of the cached Debian tree. `docker import` rejects a tar
  # with duplicate paths, so instead of tarring two dirs we make a hard-linked
  # copy of the tree (instant, no data copied) and add files to it; only new
  # paths are created, so the cached tree itself is never modified.
  merged=$(mktemp -d "$CACHE/rootfs/.tmp-node-image-XXXXXX")
  TEMP_DIRS+=("$merged")
  chmod 0755 "$merged"  # becomes the image's "/" (see ensure_tree)
  cp -al "$TREE/." "$merged/"
  # Same layout as the official node images, so the product Dockerfile works
  # the same on either base. The host binary carries ~12 MB of symbols; a
  # stripped copy runs the same.
  mkdir -p "$merged/usr/local/bin" "$merged/usr/local/lib/node_modules"
  cp "$node_bin" "$merged/usr/local/bin/node"
  strip --strip-all "$merged/usr/local/bin/node" 2>/dev/null ||
    objcopy --strip-debug "$merged/usr/local/bin/node" 2>/dev/null ||
    log "node: strip unavailable, copying unstripped binary"
  cp -a "$npm_dir" "$merged/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$merged/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$merged/usr/local/bin/npx"
  chmod 0755 "$merged/usr/local/bin/node" "$merged/usr/local/lib/node_modules/npm/bin/"*-cli.js
  log "node: node $node_version ($((($(stat -c %s "$merged/usr/local/bin/node")) / 1000000)) MB stripped), npm $("$node_bin" "$npm_dir/bin/npm-cli.js" --version 2>/dev/null || echo '?') from $npm_dir"

  # shellcheck disable=SC2016 # the smoke command is expanded in the container
  import_image "$NODE_IMAGE" "$merged" \
    'node -e "require(\"crypto\").randomBytes(1)" && echo "  node $(node --version), npm $(npm --version)"' \
    "${COMMON_CHANGES[@]}" \
    -c "ENV NODE_VERSION=${node_version#v}" \
    -c 'CMD ["node"]' \
    -m "isorun CI base: debian $SUITE minbase + node $node_version (host build)"
}

build_sandbox() {
  ensure_tree sandbox "$SANDBOX_PACKAGES"
  # shellcheck disable=SC2016 # the smoke command is expanded in the container
  import_image "$SANDBOX_IMAGE" "$TREE" \
    'curl --version >/dev/null && python3 -m pip --version >/dev/null && dig -v 2>/dev/null && ip -V >/dev/null && nc -h 2>&1 | grep -q OpenBSD && echo "  $(python3 --version), $(curl --version | head -n1 | cut -d" " -f1-2)"' \
    "${COMMON_CHANGES[@]}" \
    -c 'CMD ["/bin/bash"]' \
    -m "isorun CI sandbox: debian $SUITE minbase + $SANDBOX_PACKAGES"
}

# --- main ------------------------------------------------------------------------
MIRROR="${ISORUN_DEBIAN_MIRROR:-$(detect_mirror)}"
total0=$SECONDS
for what in "${wanted[@]}"; do
  case "$what" in
    node) image=$NODE_IMAGE ;;
    sandbox) image=$SANDBOX_IMAGE ;;
  esac
  if image_exists "$image" && [ "$force" -eq 0 ]; then
    log "$image: exists, skipping (use --force to rebuild)"
    continue
  fi
  t0=$SECONDS
  log "$image: building"
  "build_$what"
  log "$image: done in $((SECONDS - t0))s"
done
log "all done in $((SECONDS - total0))s"
