#!/usr/bin/env bash
# Times the seed CNN (one MNIST training epoch at batch 32, inference at batch 256) in MedFed
# and, in the same run with the same thread count, in PyTorch (Debian's python3-torch), and
# prints the ratios. PyTorch runs at its best here: OPENBLAS_NUM_THREADS=1 and
# torch.set_num_threads(THREADS). Usage: bench/cnn.sh [THREADS] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
epochs=${2:-1}
mnist=$(go run ./bench/mnistdir)
go build -o /tmp/medfed-cnnspeed ./bench/cnnspeed
echo "threads: $threads, epochs timed: $epochs, MNIST from $mnist"
ours=$(GOMAXPROCS=$threads /tmp/medfed-cnnspeed -epochs "$epochs")
echo "medfed:  $ours"
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "pytorch: skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch)"
  exit 0
fi
theirs=$(OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=$threads /usr/bin/python3 bench/cnn_torch.py "$mnist" "$threads" "$epochs")
echo "pytorch: $theirs"
/usr/bin/python3 - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ea, eb = min(a["epoch_seconds"]), min(b["epoch_seconds"])
print(f"epoch time: medfed {ea:.2f}s, pytorch {eb:.2f}s, ratio medfed/pytorch {ea/eb:.2f} (target <= 0.7, limit 1.0)")
ia, ib = a["infer_images_per_second"], b["infer_images_per_second"]
print(f"inference at batch 256: medfed {ia:.0f} img/s, pytorch {ib:.0f} img/s, ratio {ia/ib:.2f} (want >= 1.0)")
PY
