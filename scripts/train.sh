#!/usr/bin/env bash
# Installs dependencies, builds, and trains the MLP on Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
make all
./build/weft train examples/mlp.job "$@"
