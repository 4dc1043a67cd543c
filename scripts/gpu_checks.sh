#!/usr/bin/env bash
# All GPU checks and benchmarks of the project in one run, for a session that has the
# lent GPU machine (torch >= 2.5 preinstalled, no registry): run from the repository
# root, e.g. through the device tool with
#     bash scripts/gpu_checks.sh "$OUT"
# It writes each tool's output to OUT/ (default gpu-results/) and never stops at a
# failure, so one call gives every figure it can. Its steps time out after 530 s in all.
set -u
out="${1:-gpu-results}"
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:-}:$(pwd)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
python -c "import torch, torchvision, torch_geometric as g; print(torch.__version__, torchvision.__version__, g.__version__)" \
    | tee -a "$out/card.txt"
run() {  # name, timeout in seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" > "$out/$name.txt" 2>&1
    echo "exit $? ($name)" | tee -a "$out/$name.txt"
    tail -n 12 "$out/$name.txt"
}
run check_cuda 100 python scripts/check_cuda.py
run bench_ghn 150 python scripts/bench_ghn.py --device cuda --cuda-graph --runs 10
run bench_train 100 python scripts/bench_train.py --device cuda --runs 5
# the real GHN-QAT step (README recipe; 256 efficient architectures built on the spot;
# Fashion-MNIST when carried, else synthetic images of its shape)
run bench_train_efficient 120 python scripts/bench_train.py --workload efficient --device cuda \
    --graphs "$out/graphs" --num-archs 256 --runs 8 --warmup 3
run bench_quant 60 python scripts/bench_quant.py --device cuda
