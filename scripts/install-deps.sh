#!/usr/bin/env bash
# Installs every Debian package weft needs to build, test and train.
# Usage: scripts/install-deps.sh [--bench]   (--bench adds PyTorch and Open MPI for bench/)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev libopenblas0-pthread libdnnl-dev zlib1g-dev libcjson-dev
      libssl-dev dataset-fashion-mnist python3 fortunes)
pkgs+=(libhiredis-dev redis-server)  # data cache: the Redis client, and the server the cache tests start
pkgs+=(clang libclang-rt-14-dev)  # make fuzz: clang with libFuzzer (libclang-rt-14-dev holds libclang_rt.fuzzer)
pkgs+=(stress-ng)  # make test-load: the CPU-bound processes beside the multi-process tests
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(python3-torch python3-numpy hyperfine)
  pkgs+=(openmpi-bin libopenmpi-dev)  # bench/allreduce.sh: MPI_Allreduce as the reference
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
