#!/usr/bin/env bash
# weft vs PyTorch training-speed benchmark. See bench/README.md.
#
#   bash bench/run.sh [--quick] [--cases mlp64,mlp256,cnn64] [--runs N] [--threads 1,2]
#                     [--torch-setting auto|1xN|Nx1] [--rss-epochs N] [--json FILE]
#                     [--no-deps] [--no-build]
#
# Installs the bench packages, builds weft (Release, build-bench/) and sgemm_peak, checks
# which BLAS PyTorch loads, sets the same OpenBLAS settings for both sides, then runs
# bench/bench.py, which prints the table. WEFT_BENCH_BUILD=DIR builds and runs DIR/weft
# instead of build-bench/ (with --no-build, an existing build); WEFT_BENCH_PYTHON picks python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${WEFT_BENCH_BUILD:-$ROOT/build-bench}

deps=1 build=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-deps) deps=0 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1") ;;
  esac
  shift
done

echo "== dependencies"
if [ "$deps" = 1 ]; then
  if ! scripts/install-deps.sh --bench; then
    echo "bench: warning: scripts/install-deps.sh --bench failed; going on with what is installed" >&2
  fi
fi

# A python3 that has torch: the pyenv or venv python3 first on PATH may not see Debian's python3-torch.
PY=""
for p in "${WEFT_BENCH_PYTHON:-}" python3 /usr/bin/python3; do
  [ -n "$p" ] || continue
  if command -v "$p" >/dev/null && "$p" -c 'import torch, numpy' 2>/dev/null; then PY=$(command -v "$p"); break; fi
done
if [ -z "$PY" ]; then
  echo "bench: error: no python3 that can import torch and numpy (Debian: python3-torch python3-numpy)" >&2
  exit 1
fi
echo "python: $PY (torch $("$PY" -c 'import torch; print(torch.__version__)'))"

echo "== build"
mkdir -p "$BUILD/bench"
if [ "$build" = 1 ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j "$(nproc)" --target weft >/dev/null
fi
cc -O2 -std=c11 -Wall -o "$BUILD/bench/sgemm_peak" bench/sgemm_peak.c $(pkg-config --cflags --libs openblas)
echo "built $BUILD/weft and $BUILD/bench/sgemm_peak"

echo "== BLAS settings"
if command -v update-alternatives >/dev/null; then
  alt=$(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | sed -n 's/^Value: //p' || true)
  echo "libblas.so.3 alternative: ${alt:-unknown}"
fi
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then
  # OpenBLAS 0.3.21 does not pick its AVX-512 kernels on these CPUs by itself (PERFORMANCE.md).
  export OPENBLAS_CORETYPE=SkylakeX
  echo "CPU has avx512f: OPENBLAS_CORETYPE=SkylakeX for weft, PyTorch and sgemm_peak"
else
  echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset: the library picks its kernels)} for all sides"
fi
echo "threads: OPENBLAS_NUM_THREADS = weft's 'threads' = the row's count. PyTorch at 1 thread: 1 torch"
echo "  thread x 1 BLAS thread; at N: 1 torch thread x N BLAS threads (its best two-core MLP setting in"
echo "  PERFORMANCE.md) or N torch x 1 BLAS, whichever a short probe finds faster (--torch-setting)."
echo

exec "$PY" bench/bench.py --weft "$BUILD/weft" --sgemm "$BUILD/bench/sgemm_peak" ${args[@]+"${args[@]}"}
