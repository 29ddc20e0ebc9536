#!/usr/bin/env bash
# Installs the Debian packages lnserve needs that are missing, with apt-get.
# Usage: tools/install-deps.sh [extra-package ...]
# Build and test need the -dev libraries; `make bench` adds wrk and nginx.
set -euo pipefail

pkgs=(gcc g++ make libc6-dev pkg-config libmicrohttpd-dev libjansson-dev liburing-dev
      libcmocka-dev libfast-float-dev libdragonbox-dev liblapacke-dev liblapack-dev
      python3 openssl "$@")

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
