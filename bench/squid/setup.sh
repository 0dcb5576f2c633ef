#!/usr/bin/env bash
# Installs what `npm run bench:proxy` compares against: Debian's squid-openssl
# (squid built with OpenSSL, needed for ssl_bump peek/splice) and wrk (the
# keep-alive load generator; the bench falls back to a Node one without it).
# Needs root and Debian's package lists. The bench runs this itself when squid
# is missing; it only installs packages and starts nothing.
set -euo pipefail

need=()
if ! command -v squid >/dev/null 2>&1 || ! squid -v 2>/dev/null | grep -q -- '--with-openssl'; then
  need+=(squid-openssl)
fi
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -eq 0 ]; then
  echo "squid-openssl and wrk are installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "need root to install ${need[*]} (apt-get install -y ${need[*]})" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get: install ${need[*]} by hand" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${need[@]}" || {
  apt-get update
  apt-get install -y --no-install-recommends "${need[@]}"
}
