#!/usr/bin/env bash
# Installs the Debian packages the test suite uses, if missing: the Prometheus server and a Lua interpreter.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v lua5.4 >/dev/null 2>&1 || need+=(lua5.4)
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then echo "system-deps: need root to install: ${need[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "system-deps: prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), $(lua5.4 -v 2>&1)"
