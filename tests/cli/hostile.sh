#!/usr/bin/env bash
# ctest labels: multiprocess
# Hostile peers (issue 18): a pipeline `weft run` job attacked without the cluster token —
# idle connections, slow-loris partial frames, HELLOs announcing 1 GiB, wrong tokens and
# connect/close cycles — first on the coordinator's port, then on a worker's data listener.
# The job must finish byte-identical to `weft train`, `weft status` must answer throughout
# (within 10 s here: the suite may run on a loaded machine; bench/hostile.sh holds it to 1 s
# and the step rate to 90 %), and the attacked process must grow by less than 50 MB.
set -euo pipefail
WEFT=$1
SRC=$2
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec timeout 600 "$PY" "$SRC/bench/hostile.py" --weft "$WEFT" --check --target both --window 3 --warmup 10 \
  --max-steps 500 --idle 30 --loris 30 --big 10 --cycles 100 --wrong 5 --status-limit 10
