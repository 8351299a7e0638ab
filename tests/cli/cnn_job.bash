# Sourced by the multi-process shell tests in tests/cli: the short CNN job
# they train (single process and distributed must end byte-identical).
#   cnn_job FILE OUT [LINE...]   writes the job to FILE (outputs in OUT), then each LINE
# Needs SRC (the source tree) and DATA (the Fashion-MNIST folder).
cnn_job() {
  local file=$1 out=$2
  shift 2
  {
    cat <<EOF2
model = $SRC/examples/cnn.wf
data = $DATA
epochs = 1
batch = 48
micro_batches = 6
optimizer = adam
lr = 0.001
threads = 1
eval_batch = 2500
out = $out
EOF2
    local line
    for line in "$@"; do echo "$line"; done
  } >"$file"
}
