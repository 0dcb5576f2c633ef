#!/usr/bin/env bash
# Build the isorun product image (runner + proxy) from the repo's Dockerfile,
# the way CI and the end-to-end test set-up need it on this machine:
#
#   - Docker engine ensured running       (scripts/ci/ensure-docker.sh)
#   - local base image isorun-ci/node:20  (scripts/ci/build-base-images.sh node;
#                                          no registry to pull node:20 from)
#   - the host's CA bundle copied to docker/extra-ca/ci-host-ca-bundle.crt
#     (git-ignored): build containers reach the npm registry only through a
#     TLS-inspecting proxy that the host bundle trusts
#   - docker build with the legacy builder (no BuildKit/buildx here)
#
# Always runs `docker build` (so source changes are picked up); the layer
# cache makes an unchanged rebuild take seconds.
#
# Usage: build-product-image.sh
# Env:
#   ISORUN_IMAGE          tag to build             (default isorun:local)
#   ISORUN_BASE_IMAGE     BASE_IMAGE build arg     (default isorun-ci/node:20)
#   ISORUN_CI_CA_BUNDLE   CA bundle to trust in the build, "" for none
#                         (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IMAGE="${ISORUN_IMAGE:-isorun:local}"
BASE_IMAGE="${ISORUN_BASE_IMAGE:-isorun-ci/node:20}"
CA_BUNDLE="${ISORUN_CI_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
CA_DEST="$ROOT/docker/extra-ca/ci-host-ca-bundle.crt"

log() { printf '[product-image] %s\n' "$*"; }
die() { printf '[product-image] ERROR: %s\n' "$*" >&2; exit 1; }

t_all=$SECONDS

"$ROOT/scripts/ci/ensure-docker.sh"

case "$BASE_IMAGE" in
  isorun-ci/node:*) "$ROOT/scripts/ci/build-base-images.sh" node ;;
  *) docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 ||
       log "base image $BASE_IMAGE is not local; docker build will try to pull it" ;;
esac

# Build-time CA. Only rewrite the file when its content changes (the layer
# cache keys on content anyway; this just avoids needless writes).
if [ -n "$CA_BUNDLE" ]; then
  [ -s "$CA_BUNDLE" ] || die "CA bundle $CA_BUNDLE missing or empty (set ISORUN_CI_CA_BUNDLE=\"\" to build without one)"
  mkdir -p "$(dirname "$CA_DEST")"
  if cmp -s "$CA_BUNDLE" "$CA_DEST"; then
    log "CA: $CA_DEST is up to date"
  else
    install -m 0644 "$CA_BUNDLE" "$CA_DEST"
    log "CA: copied $CA_BUNDLE to $CA_DEST"
  fi
else
  rm -f "$CA_DEST"
  log "CA: none (ISORUN_CI_CA_BUNDLE is empty)"
fi

# Labels only; they never affect the build.
version=$(sed -n 's/^  "version": *"\([^"]*\)".*/\1/p' "$ROOT/package.json" | head -n1)
revision=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null || true)" ]; then
  revision="$revision-dirty"
fi

old_id=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
log "building $IMAGE from $ROOT (BASE_IMAGE=$BASE_IMAGE, version ${version:-?}, revision $revision)"
t0=$SECONDS
# DOCKER_BUILDKIT=0 unless set: this machine has no buildx, and a newer docker
# CLI only falls back to the legacy builder after a warning. Being explicit
# keeps CI logs predictable. The Dockerfile works with either builder.
# --force-rm: a failed RUN otherwise leaves its stopped container (and its
# image layers) behind on every failed CI build.
DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build --force-rm \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg ISORUN_VERSION="${version:-dev}" \
  --build-arg ISORUN_REVISION="$revision" \
  -t "$IMAGE" \
  "$ROOT"
log "docker build took $((SECONDS - t0))s"

# Smoke test that does not depend on the CLI's behaviour: the entry point is
# there, readable by the image's user, and Node can load the ESM entry's deps.
docker run --rm --network none --entrypoint node "$IMAGE" -e '
  const fs = require("fs");
  fs.accessSync("/app/dist/src/cli/main.js", fs.constants.R_OK);
  if (process.getuid() === 0) { console.error("image runs as root"); process.exit(1); }
  console.log(`  smoke: node ${process.version}, uid ${process.getuid()}, NODE_ENV=${process.env.NODE_ENV}`);
' || die "smoke test of $IMAGE failed"

new_id=$(docker image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  # The previous build is now an untagged leftover; drop it (fails harmlessly
  # if a container still uses it).
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
# The legacy builder keeps each build's final build-stage image (untagged) as
# cache. Keep the newest (the next build's cache) and drop older ones, which
# would otherwise pile up by a few MB per source change.
mapfile -t stale < <(docker images --filter dangling=true --filter label=org.isorun.stage=build \
  --format '{{.CreatedAt}}\t{{.ID}}' | sort -r | tail -n +2 | cut -f2)
if [ "${#stale[@]}" -gt 0 ]; then
  docker rmi "${stale[@]}" >/dev/null 2>&1 || true
  log "removed ${#stale[@]} stale build-stage image(s)"
fi

size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
log "$IMAGE ready: ${new_id:7:12}, $((size / 1000000)) MB, total $((SECONDS - t_all))s"
