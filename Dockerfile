# isorun: one image for both roles —
#   isorun runner   the API server that drives the Docker Engine (default CMD)
#   isorun proxy    the per-sandbox egress proxy sidecar (the runner starts
#                   it from this same image, as the bundle dist/isorun-proxy.mjs)
#
#   docker build -t isorun:local .
#   docker build --build-arg BASE_IMAGE=isorun-ci/node:20 -t isorun:local .
#
# Only plain Dockerfile syntax (no RUN --mount, --secret or heredocs), so it
# builds with the legacy builder as well as BuildKit.
#
# Run it with an init process (`docker run --init`, compose `init: true`):
# the image has no tini of its own, Docker's docker-init is used instead, so
# signals are forwarded and zombies reaped with any base image.
#
# Behind a TLS-inspecting proxy? Put its root CA as a *.crt file in
# docker/extra-ca/ (see the README there); the build stage trusts it for npm.

# Both stages use the same base so the node_modules built in one run in the
# other. Any Node 20 glibc image works (CI uses a locally-made one).
ARG BASE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------- build stage
FROM ${BASE_IMAGE} AS build
# Marks the (untagged) build-stage images the legacy builder leaves behind, so
# scripts/ci/build-product-image.sh can drop stale ones.
LABEL org.isorun.stage=build
WORKDIR /src
ENV NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false

# Optional extra CA certificates (docker/extra-ca/*.crt, usually none). They
# are *added* to Node's built-in roots via NODE_EXTRA_CA_CERTS (npm's `cafile`
# setting would *replace* them). Set only for the npm command that downloads,
# and never copied into the runtime stage.
COPY docker/extra-ca/ /tmp/extra-ca/
COPY package.json package-lock.json ./
# The SDK (package `isorun`) is an npm workspace the server depends on.
COPY sdk/typescript/package.json sdk/typescript/package.json
# --ignore-scripts: the runtime needs no native addons (optional ones such as
# ssh2's crypto binding fall back to JS), there is no compiler in the image,
# and install scripts of third-party packages are not something we want to
# run anyway.
RUN set -eu; \
    if cat /tmp/extra-ca/*.crt >/tmp/extra-ca.pem 2>/dev/null && [ -s /tmp/extra-ca.pem ]; then \
      export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; \
      echo "isorun build: trusting extra CA certificates from docker/extra-ca/"; \
    fi; \
    npm ci --ignore-scripts

COPY . .
# Compile, then drop devDependencies (typescript, vitest, ...) in place: the
# runtime stage copies this node_modules as it is. prune works offline.
RUN npm run build \
 && test -f dist/src/cli/main.js \
 && test -f dist/isorun-proxy.mjs \
 && test -f sdk/typescript/dist/index.js \
 && npm prune --omit=dev --ignore-scripts \
 && find node_modules -mindepth 1 -maxdepth 1 -type d -empty -delete

# -------------------------------------------------------------- runtime stage
FROM ${BASE_IMAGE}

ENV NODE_ENV=production

# A fixed numeric uid:gid (10001) that exists on no base image, with a passwd
# entry so tools and os.userInfo() can name it. useradd where the base has it
# (Debian), a plain /etc/passwd line elsewhere (e.g. Alpine, distroless-ish).
RUN set -eu; \
    if command -v useradd >/dev/null 2>&1 && command -v groupadd >/dev/null 2>&1; then \
      groupadd --gid 10001 isorun; \
      useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
              --shell /usr/sbin/nologin --comment isorun isorun; \
    else \
      echo 'isorun:x:10001:10001:isorun:/nonexistent:/sbin/nologin' >>/etc/passwd; \
      echo 'isorun:x:10001:' >>/etc/group; \
    fi

WORKDIR /app
# Owned by root and read-only for the app user: the process cannot rewrite its
# own code or built-in profiles.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/profiles ./profiles
COPY --from=build /src/dist/src ./dist/src
# The sidecar's program: `isorun proxy` bundled into one file (scripts/bundle-proxy.mjs);
# the runner starts proxy containers with it (SIDECAR_PROGRAM in src/runner/container-specs.ts).
COPY --from=build /src/dist/isorun-proxy.mjs ./dist/isorun-proxy.mjs
# node_modules/isorun is a workspace link to the SDK: the CLI's client commands use it.
COPY --from=build /src/sdk/typescript/package.json ./sdk/typescript/package.json
COPY --from=build /src/sdk/typescript/dist ./sdk/typescript/dist
# `isorun` on the PATH, so `docker compose exec runner isorun ls` works.
RUN printf '#!/bin/sh\nexec node /app/dist/src/cli/main.js "$@"\n' >/usr/local/bin/isorun \
 && chmod 0755 /usr/local/bin/isorun

# Labels last: they change on every commit and should not bust layer caches.
ARG BASE_IMAGE
ARG ISORUN_VERSION=dev
ARG ISORUN_REVISION=unknown
LABEL org.opencontainers.image.title="isorun" \
      org.opencontainers.image.description="Self-hosted egress control for Docker sandboxes: runner API and per-sandbox egress proxy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${ISORUN_VERSION}" \
      org.opencontainers.image.revision="${ISORUN_REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# The runner API (compose publishes it). The proxy role binds 53/80/443 as
# this non-root user thanks to the per-container sysctl
# net.ipv4.ip_unprivileged_port_start=0 the runner sets; nothing in the image.
EXPOSE 8080
# No HEALTHCHECK here: the proxy sidecars run this image too and do not serve
# the runner's /healthz. docker-compose.yml defines one for the runner.
USER 10001:10001
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["runner"]
