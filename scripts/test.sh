#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite: the release
# build's tests, then its multi-process tests again with two CPU-bound
# processes beside them (make test-load), then the unit tests again under
# ASan+UBSan, then the thread pool under TSan, then the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
flags="-DWEFT_WERROR=${WEFT_WERROR:-ON}"
make all CMAKE_FLAGS="$flags"
make test CMAKE_FLAGS="$flags"
make test-load CMAKE_FLAGS="$flags"
make asan-test CMAKE_FLAGS="$flags"
make tsan-test CMAKE_FLAGS="$flags"
make fuzz FUZZ_SECONDS=30
