#!/usr/bin/env bash
# All-reduce bus bandwidth: weft's wf_allreduce_i64 against Open MPI's
# MPI_Allreduce (MPI_INT64_T, MPI_SUM, in place) on the same buffer sizes,
# both over TCP on loopback; Open MPI over shared memory (vader) as an extra
# column. Results: bench/ALLREDUCE.md.
#
#   bash bench/allreduce.sh [--ranks "2 4"] [--sizes-mib "1 4 16 64"] [--iters 7]
#                           [--reps 3] [--algo 0|1|2] [--no-shm] [--no-deps]
#
# Bus bandwidth = 2(p-1)/p * bytes / time (the bytes each rank must move in
# an optimal all-reduce). One iteration's time is the mean over the ranks,
# after a barrier; each run prints the median of --iters iterations; weft and
# MPI runs alternate --reps times and the table shows the median run, so
# that load from elsewhere on a small machine hits both sides alike.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${WEFT_BENCH_BUILD:-$ROOT/build-allreduce}

ranks="2 4" sizes_mib="1 4 16 64" iters=7 reps=3 algo=0 shm=1 deps=1
while [ $# -gt 0 ]; do
  case "$1" in
    --ranks) ranks=$2; shift ;;
    --sizes-mib) sizes_mib=$2; shift ;;
    --iters) iters=$2; shift ;;
    --reps) reps=$2; shift ;;
    --algo) algo=$2; shift ;;
    --no-shm) shm=0 ;;
    --no-deps) deps=0 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "allreduce.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$deps" = 1 ] && ! scripts/install-deps.sh --bench; then
  echo "allreduce.sh: warning: scripts/install-deps.sh --bench failed; going on with what is installed" >&2
fi
for tool in mpicc mpirun cc cmake; do
  command -v "$tool" >/dev/null || { echo "allreduce.sh: $tool not found (Debian: openmpi-bin libopenmpi-dev)" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target weft_comm >/dev/null
cc -O2 -std=c11 -D_DEFAULT_SOURCE -I"$ROOT/include" -o "$tmp/allreduce_weft" bench/allreduce_weft.c \
  "$BUILD/libweft_comm.a" "$BUILD/libweft_core.a" $(pkg-config --libs zlib) -lm -lpthread
mpicc -O2 -o "$tmp/allreduce_mpi" bench/allreduce_mpi.c

bytes=()
for m in $sizes_mib; do bytes+=($((m * 1024 * 1024))); done
mpi=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
# ob1 with the TCP transport over lo: a TCP-to-TCP comparison (UCX, if present, would pick shared memory)
tcp=(--mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lo)
shmem=(--mca pml ob1 --mca btl vader,self)

echo "cpus: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg), $(mpirun --version | head -1)"
for p in $ranks; do
  for rep in $(seq "$reps"); do
    echo "ranks $p, run $rep of $reps" >&2
    "$tmp/allreduce_weft" "$p" "$iters" "$algo" "${bytes[@]}" | sed 's/^/weft /' >>"$tmp/results"
    "${mpi[@]}" -np "$p" "${tcp[@]}" "$tmp/allreduce_mpi" "$iters" "${bytes[@]}" | sed 's/^/tcp /' >>"$tmp/results"
    if [ "$shm" = 1 ]; then
      "${mpi[@]}" -np "$p" "${shmem[@]}" "$tmp/allreduce_mpi" "$iters" "${bytes[@]}" | sed 's/^/shm /' >>"$tmp/results"
    fi
  done
done

python3 - "$tmp/results" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)  # (side, ranks, bytes) -> busbw of each run
for line in open(sys.argv[1]):
    side, p, b, _t, bw = line.split()
    runs[(side, int(p), int(b))].append(float(bw))
med = {k: statistics.median(v) for k, v in runs.items()}
shm = any(k[0] == "shm" for k in med)
print("| ranks | size | weft GB/s | MPI tcp GB/s | weft/MPI tcp |" + (" MPI shm GB/s |" if shm else ""))
print("|---|---|---|---|---|" + ("---|" if shm else ""))
for (side, p, b) in sorted(k for k in med if k[0] == "weft"):
    w, t = med[("weft", p, b)], med.get(("tcp", p, b))
    row = f"| {p} | {b >> 20} MiB | {w:.2f} | {t:.2f} | {w / t:.2f} |" if t else f"| {p} | {b >> 20} MiB | {w:.2f} | - | - |"
    if shm:
        s = med.get(("shm", p, b))
        row += f" {s:.2f} |" if s else " - |"
    print(row)
EOF
