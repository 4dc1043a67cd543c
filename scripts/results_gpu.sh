#!/usr/bin/env bash
# The README's results tables on one CUDA GPU in one call: N processes share the
# (job, architecture) work of scripts/results_fmnist.py, then one more run writes the
# tables if every pair is cached (it computes nothing). Fashion-MNIST is read from $GHN_PYG_DATA (default .data).
#   bash scripts/results_gpu.sh OUT [N] [LIMIT_S] [extra results_fmnist.py flags...]
# OUT receives results.tar.gz (docs/results/fmnist-v2 and the figures), each process's log and,
# when the SGD reference was trained, sgd-models.tar.gz (its weights, about 13 MB for 19
# networks: unpack it at the repository root and later evaluations reuse them instead of training).
# Each worker stops after LIMIT_S seconds (default 420); finished architectures stay cached.
set -uo pipefail
OUT=${1:?usage: results_gpu.sh OUT [N] [LIMIT_S] [flags...]}
N=${2:-6}
LIMIT=${3:-420}
shift $(( $# < 3 ? $# : 3 ))
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}. GHN_PYG_DATA=${GHN_PYG_DATA:-.data} PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=2
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python}
# What comes back in results.tar.gz (match --out/--figures when you change them).
RESULTS=${RESULTS:-docs/results/fmnist-v2 docs/figures/fmnist-v2}
SGD_MODELS=${SGD_MODELS:-results/sgd-models}  # match --sgd-models when you change it
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1 || true
start=$(date +%s)
for ((k = 0; k < N; k++)); do
  timeout "$LIMIT" "$PYTHON" scripts/results_fmnist.py --device "$DEVICE" --shard "$k/$N" "$@" \
    > "$OUT/shard-$k.log" 2>&1 &
done
wait
# Only assemble here: whatever the shards left stays for the next call (never start
# long work after the shards' time is up).
"$PYTHON" scripts/results_fmnist.py --device "$DEVICE" --assemble-only "$@" > "$OUT/tables.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s" >> "$OUT/tables.log"
# shellcheck disable=SC2086
tar czf "$OUT/results.tar.gz" --exclude=sgd-models $RESULTS
if [ -d "$SGD_MODELS" ] && [ -n "$(ls -A "$SGD_MODELS")" ]; then
  tar czf "$OUT/sgd-models.tar.gz" "$SGD_MODELS"
fi
tail -n 3 "$OUT"/shard-*.log "$OUT/tables.log"
