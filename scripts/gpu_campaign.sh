#!/usr/bin/env bash
# Continue a training campaign (campaign/NAME, committed resumable state) on the lent
# GPU machine within one call, and bring its state back through OUT:
#     bash scripts/gpu_campaign.sh "$OUT" [MINUTES] [RANKS] [CAMPAIGN]
# (defaults: 9 minutes of training, 8 ranks, campaign/ghn-float). RANKS DDP processes
# share the GPU (gloo when ranks outnumber GPUs), each with (networks per step / RANKS)
# networks, so every step trains the same architectures as on the CPU
# (`Trainer` allows this change of --meta-batch on resume); `--time-limit` stops the run
# after MINUTES with a checkpoint. OUT receives last.pt, metrics.csv, config.json,
# learning_curve.png (when there is one) and train.log; copy them back into
# campaign/NAME/ and commit, then resume on the CPU with the campaign's own
# --meta-batch (see its issue note).
# Carry (ignored paths, about 62 MB): the campaign's architecture datasets and the
# Fashion-MNIST training files, e.g.
#     carry: ["graphs/efficient-fmnist-10k", "graphs/cells-fmnist", ".data/campaign"]
# with .data/campaign/fashion-mnist/train-{images-idx3,labels-idx1}-ubyte.gz copied from
# /usr/share/datasets/fashion-mnist.
set -euo pipefail
out="${1:?usage: gpu_campaign.sh OUT [MINUTES] [RANKS] [CAMPAIGN]}"
minutes="${2:-9}"
ranks="${3:-8}"
run="${4:-campaign/ghn-float}"
device="${DEVICE:-cuda}"  # DEVICE=cpu tries the script without a GPU
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:-}:$(pwd)" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
[ -d .data/campaign/fashion-mnist ] && export GHN_PYG_DATA="$(pwd)/.data/campaign/fashion-mnist"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/card.txt" || true
per_rank=$(python - "$run/last.pt" "$ranks" <<'EOF'
import sys, torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
per_step = state["config"]["meta_batch"] * state.get("world", 1)
ranks = int(sys.argv[2])
if per_step % ranks:
    sys.exit(f"{per_step} networks per step do not split over {ranks} ranks")
print(per_step // ranks)
EOF
)
echo "resuming $run at meta-batch $per_rank x $ranks ranks for $minutes min" | tee "$out/train.log"
status=0
limit=$(python -c "import sys; print(int(float(sys.argv[1]) * 60) + 300)" "$minutes")
timeout "$limit" python -m torch.distributed.run --standalone \
    --nproc_per_node "$ranks" -m ghn_pyg.train --out "$run" --resume --device "$device" \
    --meta-batch "$per_rank" --time-limit "$minutes" --ckpt-every 100 >> "$out/train.log" 2>&1 \
    || status=$?
tr '\r' '\n' < "$out/train.log" | grep -v '^GHN' | tail -n 20
for name in last.pt metrics.csv config.json learning_curve.png; do
    [ -f "$run/$name" ] && cp "$run/$name" "$out/"
done
python -c "import sys, torch; print('step', torch.load(sys.argv[1], map_location='cpu', weights_only=False)['step'])" \
    "$out/last.pt" | tee -a "$out/train.log"
exit "$status"
