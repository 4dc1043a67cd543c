#!/usr/bin/env bash
# All GPU checks and benchmarks of the project in one run, for a session that has the
# lent GPU machine (torch >= 2.5 preinstalled, no registry): run from the repository
# root, e.g. through the device tool with
#     bash scripts/gpu_checks.sh "$OUT" [STEP ...]
# It writes each step's output to OUT/STEP.txt (default OUT: gpu-results/) and never
# stops at a failure, so one call gives every figure it can; the steps run most
# important first (the real GHN-QAT step, alone and in DDP ranks sharing the GPU, its
# profile, the fake-quant and zoo ratios, the CUDA checks) and time out after 1030 s in
# all, so a shorter call still brings back the first ones. Name STEPs to run only those.
# Data, when carried in the ignored .data/gpu/: fashion-mnist/ (the idx files) and
# graphs-256/ (`ghn-pyg make-dataset --root .data/gpu/graphs-256 --space efficient
# --split train --size 256 --seed 0`); missing graphs are built on the spot, missing
# images replaced by synthetic ones of Fashion-MNIST's shape.
set -u
out="${1:-gpu-results}"
shift $(( $# > 0 ? 1 : 0 ))
selected=" $* "
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:-}:$(pwd)" PYTHONUNBUFFERED=1
[ -d .data/gpu/fashion-mnist ] && export GHN_PYG_DATA="$(pwd)/.data/gpu/fashion-mnist"
graphs=.data/gpu/graphs-256
[ -d "$graphs" ] || graphs="$out/graphs"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
python -c "import torch, torchvision, torch_geometric as g; print(torch.__version__, torchvision.__version__, g.__version__)" \
    | tee -a "$out/card.txt"
run() {  # name, timeout in seconds, command...
    local name=$1 limit=$2
    shift 2
    [ "$selected" = "  " ] || [[ "$selected" == *" $name "* ]] || return 0
    echo "== $name: $*"
    timeout "$limit" "$@" > "$out/$name.txt" 2>&1
    echo "exit $? ($name)" | tee -a "$out/$name.txt"
    tail -n 30 "$out/$name.txt"
}
# the real GHN-QAT step (README recipe, meta-batch 8 x 64 images, 256 efficient archs)
efficient=(python scripts/bench_train.py --workload efficient --device cuda --graphs "$graphs"
           --num-archs 256 --runs 8 --warmup 3)
run efficient 90 "${efficient[@]}"
for ranks in 2 4 8; do  # DDP ranks sharing the GPU, each with 8/ranks architectures
    run "efficient_ranks$ranks" 90 "${efficient[@]}" --ranks "$ranks"
done
# scale-out: 8 ranks with 8 architectures each (meta-batch 64 in all)
run efficient_ranks8x8 90 "${efficient[@]}" --ranks 8 --rank-meta-batch 8
run efficient_profile 90 "${efficient[@]}" --profile --runs 4 --net-threads 1
run bench_quant 60 python scripts/bench_quant.py --device cuda
run bench_train_zoo 90 python scripts/bench_train.py --device cuda --runs 5
run check_cuda 100 python scripts/check_cuda.py
run efficient_amp 60 "${efficient[@]}" --amp
run efficient_threads4 60 "${efficient[@]}" --net-threads 4
run bench_ghn 120 python scripts/bench_ghn.py --device cuda --cuda-graph --runs 10
