# Sourced by bench/pipeline.sh and bench/data.sh (from the repository root): finds the weft
# binary (build/weft; BUILD=DIR, a build folder, or BUILD=FILE, the binary), sets the same
# OpenBLAS settings as bench/run.sh (AVX-512 kernels where the CPU has them: OpenBLAS 0.3.21
# does not pick them by itself, shared/PERFORMANCE.md; weft sets the thread count from the
# job) and the python3 to run the driver with. Sets WEFT and PY; NAME names the bench in errors.
B=${BUILD:-$ROOT/build}
if [ -d "$B" ]; then WEFT=$B/weft; else WEFT=$B; fi
if [ ! -x "$WEFT" ]; then
  echo "$NAME: no weft binary at $WEFT (build it: cmake --build build -j2 --target weft, or set BUILD)" >&2
  exit 1
fi
WEFT=$(cd "$(dirname "$WEFT")" && pwd)/$(basename "$WEFT")
if grep -qw avx512f /proc/cpuinfo 2>/dev/null && [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
