#!/usr/bin/env bash
# One training slice on a bare, offline machine (the lent GPU): make the espeak-ng corpus there,
# preprocess it, train for a fixed number of minutes, and leave the inference weights and the
# TensorBoard scalars in OUT. Run scripts/gpu_kit.sh here first and carry .gpukit with the tree.
#
# usage: OUT=DIR scripts/gpu_train.sh RUN_DIR MINUTES [diffwave train options, e.g. --config base.json --bf16]
#
#   OUT/weights-<step>.pt     step, params and the weights inference uses (the average when the run
#                             keeps one); no optimizer state, so it is small enough to bring back
#                             (base model 10.5 MB). Ship it with scripts/ship_default_model.py.
#   OUT/events.out.tfevents.* the run's TensorBoard scalars (loss curve, held-out loss per level)
#   OUT/train.log             everything the steps printed
#
# Environment: OUT (required), DEVICE (cuda; cpu for a dry run), CORPUS (/tmp/corpus), SENTENCES
# (1500, the corpus of models/README.md), PYTHON (python3). RUN_DIR is resumed when it exists,
# so a second slice on the same machine continues the first.
set -euo pipefail
if [[ $# -lt 2 || -z "${OUT:-}" ]]; then
  echo "usage: OUT=DIR $0 RUN_DIR MINUTES [diffwave train options]" >&2
  exit 2
fi
run=$1 minutes=$2
shift 2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
corpus=${CORPUS:-/tmp/corpus}
sentences=${SENTENCES:-1500}
mkdir -p "$OUT"
log="$OUT/train.log"

kit="$repo/.gpukit"
if [[ -d "$kit" ]]; then
  export PATH="$kit/espeak/bin:$PATH"
  if ! "$python" -c "import soundfile" 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/diffwave-site "$kit"/wheels/*.whl
    export PYTHONPATH="/tmp/diffwave-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
elif ! command -v espeak-ng >/dev/null; then
  echo "error: no espeak-ng here and no .gpukit beside the scripts: run scripts/gpu_kit.sh first and carry .gpukit" >&2
  exit 3
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$repo"

{
  echo "== $(date -u +%FT%TZ) corpus ($sentences sentences) -> $corpus"
  "$python" -m diffwave corpus "$corpus" --sentences "$sentences" --seed 0 --workers "$(nproc)"
  "$python" -m diffwave preprocess "$corpus/train" "$corpus/heldout"
  echo "== $(date -u +%FT%TZ) train $run for $minutes min on $device"
  "$python" -m diffwave train "$run" "$corpus/train" --valid "$corpus/heldout" --device "$device" \
    --max-minutes "$minutes" --no-progress "$@"
  echo "== $(date -u +%FT%TZ) done"
} 2>&1 | tee "$log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "error: the slice failed (see $log)" >&2; exit 1; }

"$python" - "$run" "$OUT" <<'EOF'
import sys
from pathlib import Path

import torch

from diffwave.checkpoint import Checkpoint, describe_weights, load_checkpoint, load_model

run, out = Path(sys.argv[1]), Path(sys.argv[2])
ckpt = load_checkpoint(run)
model = load_model(run)
slim = Checkpoint(step=ckpt.step, model={k: v.cpu() for k, v in model.state_dict().items()}, params=ckpt.params)
target = out / f"weights-{ckpt.step}.pt"
torch.save(slim.to_dict(), target)
print(f"{target} ({describe_weights(model)}, {target.stat().st_size / 1e6:.1f} MB)")
EOF
cp "$run"/events.out.tfevents.* "$OUT"/
