#!/usr/bin/env bash
# System packages the test suite needs beyond requirements.txt (Debian):
#   docker-compose  validates docker-compose.yml against the Compose spec without a Docker engine.
#   chromium        renders the leadership report headless in tests (screenshot, console errors).
# Installs what is missing when run as root with apt-get; otherwise says what to install.
set -euo pipefail
missing=()
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "missing system packages: ${missing[*]} (install them with your package manager, e.g. sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
